//! `#[params]`: one documented struct gives defaults, the docs table and checks; the SDK's config
//! parser names the parameter and never leaks a JSON position.
use retort_sdk::{params, Params, Plugin};

/// How a value is reported.
#[derive(retort_sdk::__export::serde::Serialize, retort_sdk::__export::serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(crate = "retort_sdk::__export::serde", rename_all = "lowercase")]
pub enum Form {
    Kl,
    Ce,
}

/// Parameters of a test plugin.
#[params]
pub struct Config {
    /// softening temperature τ
    #[param(default = 4.0, gt = 0.0)]
    pub temperature: f64,
    /// weight in [0, 1]
    /// (a second doc line joins the first)
    #[param(default = 0.5, ge = 0.0, le = 1.0)]
    pub alpha: f64,
    /// hidden widths
    #[param(default = vec![8, 8])]
    pub hidden: Vec<usize>,
    /// a name
    #[param(default = "kd")]
    pub label: String,
    /// reported value
    #[param(default = Form::Kl)]
    pub form: Form,
    /// off by default
    pub flag: bool,
}

struct Dummy;

impl Plugin for Dummy {
    const NAME: &'static str = "dummy";
    const SUMMARY: &'static str = "test";
    type Config = Config;
    fn new(_ctx: retort_sdk::Ctx, _cfg: Config) -> retort_sdk::Result<Self> {
        Ok(Dummy)
    }
}

#[test]
fn defaults_docs_and_checks_come_from_one_struct() {
    let c = Config::default();
    assert_eq!((c.temperature, c.alpha, c.hidden.clone(), c.label.as_str()), (4.0, 0.5, vec![8, 8], "kd"));
    assert_eq!((c.form.clone(), c.flag), (Form::Kl, false));
    let docs = Config::docs();
    assert_eq!(docs.len(), 6);
    assert_eq!(docs[1], ("alpha", "weight in [0, 1] (a second doc line joins the first)"));
    assert_eq!(Dummy::param_docs(), docs, "Plugin::param_docs defaults to the struct's docs");
    assert!(c.check().is_ok());
    let bad = Config { alpha: 1.5, ..Config::default() };
    let e = bad.check().unwrap_err();
    assert!(e.contains("`alpha`") && e.contains("<= 1.0") && e.contains("1.5"), "{e}");
    let bad = Config { temperature: 0.0, ..Config::default() };
    assert!(bad.check().unwrap_err().contains("`temperature` must be > 0.0"));
}

#[test]
fn parsing_fills_defaults_rejects_unknown_keys_and_names_the_parameter() {
    let parse = retort_sdk::__export::parse_config::<Dummy>;
    let c = parse(r#"{"alpha": 0.25}"#).unwrap();
    assert_eq!((c.alpha, c.temperature), (0.25, 4.0));
    assert_eq!(parse("").unwrap().hidden, vec![8, 8]);
    let e = parse(r#"{"temprature": 3}"#).unwrap_err().message;
    assert!(e.contains("dummy") && e.contains("temprature") && e.contains("temperature"), "{e}");
    assert!(!e.contains("line 1"), "no JSON position: {e}");
    let e = parse(r#"{"hidden": [1, "x"]}"#).unwrap_err().message;
    assert!(e.contains("parameter `hidden[1]`"), "{e}");
    let e = parse(r#"{"temperature": -1}"#).unwrap_err().message;
    assert!(e.contains("`temperature` must be > 0.0"), "{e}");
}
