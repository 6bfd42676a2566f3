package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

func main() {
	tpl, _ := os.ReadFile(os.Args[1])
	dat, _ := os.ReadFile(os.Args[2])
	d := json.NewDecoder(bytes.NewReader(dat))
	d.UseNumber()
	var answer map[string]interface{}
	d.Decode(&answer)
	funcs := template.FuncMap{
		"secret": func(s ...string) (interface{}, error) { return map[string]interface{}{"Data": answer["data"]}, nil },
		"toJSON": func(i interface{}) (string, error) { b, err := json.Marshal(i); return string(bytes.TrimSpace(b)), err },
		"toJSONPretty": func(i interface{}) (string, error) { b, err := json.MarshalIndent(i, "", "  "); return string(bytes.TrimSpace(b)), err },
		"split": func(sep, s string) ([]string, error) { s = strings.TrimSpace(s); if s == "" { return []string{}, nil }; return strings.Split(s, sep), nil },
		"join": func(sep string, a []string) (string, error) { return strings.Join(a, sep), nil },
		"base64Encode": func(s string) (string, error) { return base64.StdEncoding.EncodeToString([]byte(s)), nil },
		"toUpper": func(s string) (string, error) { return strings.ToUpper(s), nil },
		"trimSpace": func(s string) (string, error) { return strings.TrimSpace(s), nil },
	}
	t, err := template.New("").Funcs(funcs).Option("missingkey=zero").Parse(string(tpl))
	if err != nil { fmt.Printf("ERR") ; return }
	var b bytes.Buffer
	err = t.Execute(&b, nil)
	if err != nil { fmt.Printf("ERR"); return }
	fmt.Print(b.String())
}
