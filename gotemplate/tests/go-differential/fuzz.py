"""Differential fuzzing of vaultlet-gotemplate against Go's text/template (a development tool,
not run by `cargo test`): random templates over one fixed Vault answer, rendered by `./gt`
(main.go: text/template with missingkey=zero, json.Number data and consul-template's
functions) and by the crate's `render` example; prints every template whose bytes differ.

    go build -o gt . && cargo build --release -p vaultlet-gotemplate --example render
    python3 fuzz.py SEED COUNT
"""
import random, subprocess, os, sys
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
fields = ['.Data.s','.Data.u','.Data.n','.Data.f','.Data.big','.Data.neg','.Data.z','.Data.t','.Data.b','.Data.nul','.Data.e','.Data.l','.Data.m','.Data.m.c','.Data.m.a','.Data.strs','.Data.ml','.Data.sp','.Data.missing','.Data', '$x', '.', '$']
lits = ['1','0','-3','2.5','1e3','"s"','""','"a b"','true','false','nil',"'c'",'`r`','0x1f']
verbs = ['%v','%s','%d','%q','%x','%X','%5v','%-4s','%05d','%.2f','%t','%e','%+d','%6.1f','%o','%c','%U','%3q','% x']
def term(d=0):
    r = random.random()
    if r < 0.45: return random.choice(fields)
    if r < 0.65: return random.choice(lits)
    if d > 2: return random.choice(fields)
    return '(' + pipe(d+1) + ')'
def cmd(d=0):
    r = random.random()
    if r < 0.3: return term(d)
    fn = random.choice(['print','println','printf','len','index','slice','eq','ne','lt','le','gt','ge','and','or','not','html','js','urlquery','toJSON','toJSONPretty','split','join','base64Encode','toUpper','trimSpace'])
    n = {'not':1,'len':1,'toJSON':1,'toJSONPretty':1,'base64Encode':1,'toUpper':1,'trimSpace':1,'split':2,'join':2}.get(fn, random.randint(1,3))
    args = [term(d) for _ in range(n)]
    if fn == 'printf':
        args = ['"' + ' '.join(random.choice(verbs) for _ in range(random.randint(1,3))) + '"'] + args
    if fn == 'split': args = ['","', random.choice(['.Data.s','"a,b,c"','.Data.u'])]
    if fn == 'join': args = ['"-"', random.choice(['(split "," "a,b")','.Data.strs','.Data.l'])]
    return fn + ' ' + ' '.join(args)
def pipe(d=0):
    p = cmd(d)
    if random.random() < 0.2:
        p += ' | ' + random.choice(['print','printf "%v"','len','toJSON','html','urlquery','println','printf "[%s]"'])
    return p
def node(d=0):
    r = random.random()
    if r < 0.5: return '{{ ' + pipe() + ' }}'
    if r < 0.6: return random.choice([' ', '\n', 'txt', '  \n\t', '{{/* c */}}', '{{- /* c */ -}}', ' {{- " t " -}} ', '{{ $x = ' + term() + ' }}', '{{ $x }}', '{{ template "d" ' + term() + ' }}', '\r\n'])
    if d > 2: return '{{ ' + pipe() + ' }}'
    kw = random.choice(['if','with','range'])
    head = pipe()
    if kw == 'range' and random.random() < 0.5: head = '$k, $v := ' + random.choice(['.Data.l','.Data.m','.Data.strs','.Data.missing','.Data.e'])
    body = ''.join(node(d+1) for _ in range(random.randint(1,3)))
    if kw == 'range':
        body += '{{ $k }}' if '$k' in head else ''
        body += random.choice(['', '{{ break }}', '{{ continue }}', '{{ if $k }}{{ break }}{{ end }}' if '$k' in head else ''])
    els = ('{{ else }}' + node(d+1)) if random.random() < 0.4 else ''
    tl = random.choice(['{{','{{-']); tr = random.choice(['}}','-}}'])
    return f'{tl} {kw} {head} {tr}{body}{els}{{{{ end }}}}'
def template():
    return '{{ define "d" }}[{{ . }}]{{ end }}{{ with secret "p" }}{{ $x := .Data.m }}' + ''.join(node() for _ in range(random.randint(1,4))) + '{{ end }}'
N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
bad = 0; both_ok = 0
for i in range(N):
    t = template()
    open('f.tmpl','w').write(t)
    go = subprocess.run(['./gt','f.tmpl','answer.json'], capture_output=True).stdout
    rs = subprocess.run([os.environ.get('RENDER', '../../../target/release/examples/render'),'f.tmpl','answer.json'], capture_output=True)
    ro = rs.stdout if rs.returncode == 0 else b'ERR'
    if go != ro:
        # refusal by vaultlet is acceptable only when it says "not supported by vaultlet"
        if ro == b'ERR' and b'not supported by vaultlet' in rs.stderr: continue
        bad += 1
        if bad <= 8:
            print('TEMPLATE:', t); print(' GO :', go[:300]); print(' RS :', ro[:300], rs.stderr[:300]); print()
    elif go != b'ERR': both_ok += 1
print('mismatches', bad, 'of', N, 'both rendered', both_ok)
