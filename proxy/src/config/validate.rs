//! [`Config::validate`]: the rules a parsed file already passed, checked again for a
//! configuration built or changed in code (tests, the demo, `ProxyHandle::apply_config`).

use super::error::{shadow_field, ConfigError};
use super::route::{check_extras, check_name, check_read_your_writes, WriteOrderScope};
use super::Config;
use crate::split::{Sticky, BUCKETS};

impl Config {
    /// Checks the cross-field rules again; useful after changing a parsed `Config` in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, r) in self.routes.iter().enumerate() {
            check_name(&r.name)
                .map_err(|m| ConfigError::in_code(format!("routes[{i}].name"), m))?;
            if self.routes[..i].iter().any(|o| o.name == r.name) {
                return Err(ConfigError::in_code(
                    format!("routes[{i}].name"),
                    format!("duplicate route name {:?}", r.name),
                ));
            }
            if r.percent_bp > BUCKETS {
                return Err(ConfigError::in_code(
                    format!("routes[{i}].percent"),
                    "must be between 0 and 100",
                ));
            }
            if let Sticky::Path(p) = &r.sticky {
                if r.path.param_index(p).is_none() {
                    return Err(ConfigError::in_code(
                        format!("routes[{i}].sticky"),
                        format!("path has no parameter {{{p}}}"),
                    ));
                }
            }
            check_extras(r, r.write_order != WriteOrderScope::Key)
                .map_err(|(f, m)| ConfigError::in_code(format!("routes[{i}].{f}"), m))?;
            if r.shadow.is_some() {
                for (side, b) in [
                    ("legacy", &self.backends.legacy),
                    ("new", &self.backends.new),
                ] {
                    if b.protocol.is_h2() {
                        return Err(ConfigError::in_code(
                            format!("routes[{i}].shadow"),
                            format!(
                                "shadow mode mirrors over HTTP/1.1 and compares JSON; backends.{side} \
                                 speaks {} (gRPC and HTTP/2 backends are not shadowed yet) — drop \
                                 [routes.shadow] on this route or use protocol = \"http1\"",
                                b.protocol.as_str()
                            ),
                        ));
                    }
                }
            }
        }
        check_read_your_writes(&self.routes).map_err(|(i, m)| {
            ConfigError::in_code(format!("routes[{i}].read_your_writes_ms"), m)
        })?;
        if let Some(g) = &self.shadow {
            g.validate().map_err(|err| {
                let (f, m) = shadow_field(err);
                ConfigError::in_code(f, m)
            })?;
        }
        if self.proxy.max_request_bytes == 0 {
            return Err(ConfigError::in_code(
                "proxy.max_request_bytes",
                "must be greater than 0",
            ));
        }
        if let Some(a) = &self.proxy.access_log {
            a.check()
                .map_err(|(f, m)| ConfigError::in_code(format!("proxy.access_log.{f}"), m))?;
        }
        Ok(())
    }
}
