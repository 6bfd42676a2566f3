//! Renders a template against one fixed Vault answer: `render TEMPLATE ANSWER.json`
//! (every `secret` call gets the same answer). Used to measure the engine's binary size.

use vaultlet_gotemplate::{Limits, SecretRequest, SecretSource, Template};

struct Fixed(String);

impl SecretSource for Fixed {
    fn fetch(&mut self, _req: &SecretRequest) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(template), Some(answer)) = (args.next(), args.next()) else {
        return Err("usage: render TEMPLATE ANSWER.json".into());
    };
    let t = Template::parse(&std::fs::read_to_string(template)?)?;
    let out = t.render(
        &mut Fixed(std::fs::read_to_string(answer)?),
        Limits::default(),
    )?;
    print!("{out}");
    Ok(())
}
