//! End-to-end tests of parse + render against outputs produced by Go's text/template.

use super::*;

struct Map(Vec<(&'static str, &'static str)>);

impl SecretSource for Map {
    fn fetch(&mut self, req: &SecretRequest) -> std::result::Result<String, String> {
        self.0
            .iter()
            .find(|(p, _)| *p == req.path)
            .map(|(_, b)| b.to_string())
            .ok_or_else(|| format!("no secret at {}", req.path))
    }
}

fn render(src: &str) -> Result<String> {
    let data = r#"{"data":{"n":1000000,"f":1.5,"e":1e6,"s":"a<b>&c","l":[1,"x",true,null,{"k":"v"}],"m":{"b":2,"a":"x y"},"t":true,"z":null,"empty":""}}"#;
    let mut src_map = Map(vec![("d", data)]);
    Template::parse(src)?.render(&mut src_map, Limits::default())
}

#[test]
fn prints_like_go() {
    let out = render(concat!(
        "{{ with secret \"d\" }}[{{ .Data }}]\n",
        "[{{ .Data.missing }}][{{ .Data.z }}][{{ printf \"%v|%s|%d|%q\" .Data.n .Data.s .Data.n .Data.s }}]\n",
        "[{{ .Data.l }}][{{ .Data.m }}][{{ toJSON .Data }}]\n",
        "{{ with .Data.missing }}yes{{ else }}no{{ end }} {{ if .Data.z }}y{{else}}n{{end}} {{ eq .Data.n \"1000000\" }}\n",
        "{{ printf \"%v %v %.2f\" 1.5 3 2.0 }} {{ print 1 2 \"a\" \"b\" 3 }} {{ println \"x\" 1 }}",
        "{{ len .Data.l }} {{ index .Data.l 1 }} {{ index .Data.m \"a\" }} {{ index .Data.m \"q\" }}\n",
        "{{ range $i, $e := .Data.l }}{{$i}}={{$e}};{{end}}{{range .Data.m}}{{.}}{{end}}{{ range $x := .Data.m }}{{$x}}{{end}}{{ end }}",
    ))
    .expect("renders");
    assert_eq!(
        out,
        concat!(
            "[map[e:1e6 empty: f:1.5 l:[1 x true <nil> map[k:v]] m:map[a:x y b:2] n:1000000 s:a<b>&c t:true z:<nil>]]\n",
            "[<no value>][<no value>][1000000|a<b>&c|%!d(json.Number=1000000)|\"a<b>&c\"]\n",
            "[[1 x true <nil> map[k:v]]][map[a:x y b:2]][{\"e\":1e6,\"empty\":\"\",\"f\":1.5,\"l\":[1,\"x\",true,null,{\"k\":\"v\"}],\"m\":{\"a\":\"x y\",\"b\":2},\"n\":1000000,\"s\":\"a\\u003cb\\u003e\\u0026c\",\"t\":true,\"z\":null}]\n",
            "no n true\n",
            "1.5 3 2.00 1 2ab3 x 1\n",
            "5 x x y <no value>\n",
            "0=1;1=x;2=true;3=<no value>;4=map[k:v];x y2x y2",
        )
    );
}

#[test]
fn errors_name_position_and_action() {
    let err = render("{{ with secret \"d\" }}\n[{{ .Data.missing.x }}]{{ end }}").expect_err("nil");
    assert_eq!(
        err.to_string(),
        "template:2:5: executing <.Data.missing.x>: nil pointer evaluating interface {}.x; fix the template or the secret's data"
    );
    let err = render("{{ env \"HOME\" }}").expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("template:1:4: function \"env\" is not supported by vaultlet"),
        "{err}"
    );
}
