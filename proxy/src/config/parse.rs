//! Reading a configuration: TOML text → the file as written (`raw`) → a validated
//! [`Config`], section by section; the first error stops it, naming field and line.

use std::path::Path;

use super::error::{shadow_field, ConfigError, Ctx};
use super::raw::RawConfig;
use super::Config;
use super::{backend, proxy, route};

impl Config {
    /// Parses and validates a configuration held in a string.
    pub fn from_toml_str(src: &str) -> Result<Config, ConfigError> {
        parse(src, None)
    }

    /// Reads, parses and validates a configuration file; errors carry the file name.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        parse(&src, Some(path))
    }
}

fn parse(src: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
    let cx = Ctx { src, file };
    let raw: RawConfig = toml::from_str(src).map_err(|e| cx.toml_error(e))?;
    let proxy = proxy::from_raw(&cx, raw.proxy)?;
    let backends = backend::from_raw(&cx, raw.backends)?;
    let shadow = match raw.shadow {
        None => None,
        Some(sg) => {
            let span = sg.span();
            let g = sg.into_inner();
            g.validate().map_err(|err| {
                let (f, m) = shadow_field(err);
                cx.err(f, Some(span), m)
            })?;
            Some(g)
        }
    };
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut ryw_spans = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        ryw_spans.push(r.get_ref().read_your_writes_ms.as_ref().map(|v| v.span()));
        let rc = route::from_raw(&cx, i, r, &routes)?;
        routes.push(rc);
    }
    route::check_read_your_writes(&routes).map_err(|(i, m)| {
        let span = ryw_spans.get(i).cloned().flatten();
        cx.err(format!("routes[{i}].read_your_writes_ms"), span, m)
    })?;
    Ok(Config {
        proxy,
        backends,
        routes,
        shadow,
    })
}
