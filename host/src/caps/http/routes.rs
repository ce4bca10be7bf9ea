//! The route table shared by every plugin of a host: `METHOD /path/:param`
//! patterns, conflicts between plugins, and lookup with 404/405 semantics.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
struct Route {
    method: String,
    pattern: Vec<Segment>,
    plugin: String,
}

/// Result of matching a request against the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A route matched: its plugin and the bound `:param` values (percent-decoded).
    Found {
        plugin: String,
        params: BTreeMap<String, String>,
    },
    /// The path exists for other methods only (the `Allow` header value).
    MethodNotAllowed(String),
    /// No route has this path.
    NotFound,
}

/// All routes of a host.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Longest route path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// Bytes a route path may hold besides `/`: RFC 3986 `pchar` without `%`
/// (letters, digits, `-._~!$&'()*+,;=:@`). No control character, space, NUL or
/// non-ASCII byte gets in, so a route can be written into the log as it is.
fn path_byte_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b)
}

/// Parses and normalises a route: the one normalisation used by the manifest's
/// allow-list, conflict detection and matching. The method is case-insensitive
/// (stored upper-case); the path is case-sensitive, as in RFC 3986, and kept
/// byte for byte: `/Notes` and `/notes` are two routes.
pub fn parse_route(method: &str, path: &str) -> Result<(String, String), String> {
    let method = method.trim().to_ascii_uppercase();
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("method {method:?} is not an HTTP method"));
    }
    if !path.starts_with('/') || path.len() > MAX_PATH_LEN {
        return Err(format!(
            "path {path:?} must start with '/' and be at most {MAX_PATH_LEN} bytes"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| !c.is_ascii() || !path_byte_allowed(*c as u8))
    {
        return Err(format!(
            "path {path:?} holds {bad:?}: a route path may hold only letters, digits, '/' and -._~!$&'()*+,;=:@"
        ));
    }
    let pattern = segments(path)?;
    let mut seen = Vec::new();
    for seg in &pattern {
        if let Segment::Param(name) = seg {
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "path {path:?}: parameter :{name} may hold only letters, digits and '_'"
                ));
            }
            if seen.contains(&name) {
                return Err(format!("path {path:?} binds :{name} twice"));
            }
            seen.push(name);
        }
    }
    Ok((method, path.to_string()))
}

/// Parses a manifest route line, `"METHOD /path"`, with [`parse_route`].
pub fn parse_route_line(line: &str) -> Result<(String, String), String> {
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        [method, path] => parse_route(method, path),
        _ => Err(format!("route {line:?} must be \"METHOD /path\"")),
    }
}

fn segments(path: &str) -> Result<Vec<Segment>, String> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed
        .split('/')
        .map(|s| match s.strip_prefix(':') {
            Some("") => Err(format!("path {path:?} has a ':' segment without a name")),
            Some(name) => Ok(Segment::Param(name.to_string())),
            None if s.is_empty() => Err(format!("path {path:?} has an empty segment")),
            None => Ok(Segment::Literal(s.to_string())),
        })
        .collect()
}

/// Two patterns that match exactly the same paths (parameter names aside).
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Param(_), Segment::Param(_)) => true,
            _ => false,
        })
}

impl RouteTable {
    /// How many routes `plugin` serves.
    pub fn count(&self, plugin: &str) -> usize {
        self.routes.iter().filter(|r| r.plugin == plugin).count()
    }

    /// True when `plugin` already serves `method path` (parameter names aside),
    /// so registering it again adds nothing.
    pub fn serves(&self, method: &str, path: &str, plugin: &str) -> bool {
        let Ok(pattern) = segments(path) else {
            return false;
        };
        self.routes
            .iter()
            .any(|r| r.plugin == plugin && r.method == method && same_shape(&r.pattern, &pattern))
    }

    /// Adds `method path` for `plugin`. Registering a route the plugin already
    /// has is a no-op (a restarted plugin registers again); a route another
    /// plugin has is refused with that plugin's name.
    pub fn insert(&mut self, method: &str, path: &str, plugin: &str) -> Result<(), String> {
        let (method, path) = parse_route(method, path)?;
        let pattern = segments(&path)?;
        if let Some(existing) = self
            .routes
            .iter()
            .find(|r| r.method == method && same_shape(&r.pattern, &pattern))
        {
            return if existing.plugin == plugin {
                Ok(())
            } else {
                Err(format!(
                    "route {method} {path} is already served by plugin `{}`; plugin `{plugin}` cannot register it",
                    existing.plugin
                ))
            };
        }
        self.routes.push(Route {
            method,
            pattern,
            plugin: plugin.to_string(),
        });
        Ok(())
    }

    /// Matches `method path`. Among matching routes the most specific (most
    /// literal segments) wins, so `/notes/search` beats `/notes/:id`.
    pub fn lookup(&self, method: &str, path: &str) -> Lookup {
        let parts: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut allowed: Vec<&str> = Vec::new();
        let mut best: Option<(usize, &Route)> = None;
        for route in &self.routes {
            if route.pattern.len() != parts.len() {
                continue;
            }
            let matches = route
                .pattern
                .iter()
                .zip(&parts)
                .all(|(seg, part)| match seg {
                    Segment::Literal(l) => l == part,
                    Segment::Param(_) => true,
                });
            if !matches {
                continue;
            }
            if route.method != method {
                allowed.push(&route.method);
                continue;
            }
            let literals = route
                .pattern
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            if best.is_none_or(|(n, _)| literals > n) {
                best = Some((literals, route));
            }
        }
        match best {
            Some((_, route)) => {
                let params = route
                    .pattern
                    .iter()
                    .zip(&parts)
                    .filter_map(|(seg, part)| match seg {
                        Segment::Param(name) => Some((name.clone(), percent_decode(part))),
                        Segment::Literal(_) => None,
                    })
                    .collect();
                Lookup::Found {
                    plugin: route.plugin.clone(),
                    params,
                }
            }
            None if allowed.is_empty() => Lookup::NotFound,
            None => {
                allowed.sort_unstable();
                allowed.dedup();
                Lookup::MethodNotAllowed(allowed.join(", "))
            }
        }
    }
}

/// Decodes `%XX` escapes (and nothing else); invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string; `+` is a space, the last value of a repeated key wins.
pub fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_bind_and_specific_routes_win() {
        let mut t = RouteTable::default();
        t.insert("get", "/notes/:id", "a").unwrap();
        t.insert("GET", "/notes/search", "a").unwrap();
        t.insert("DELETE", "/notes/:id", "a").unwrap();
        assert_eq!(
            t.lookup("GET", "/notes/a%20b"),
            Lookup::Found {
                plugin: "a".into(),
                params: BTreeMap::from([("id".into(), "a b".into())])
            }
        );
        assert_eq!(
            t.lookup("GET", "/notes/search"),
            Lookup::Found {
                plugin: "a".into(),
                params: BTreeMap::new()
            }
        );
        assert_eq!(
            t.lookup("PUT", "/notes/1"),
            Lookup::MethodNotAllowed("DELETE, GET".into())
        );
        assert_eq!(t.lookup("GET", "/other"), Lookup::NotFound);
        assert_eq!(t.lookup("GET", "/notes/1/x"), Lookup::NotFound);
    }

    #[test]
    fn conflicts_name_both_plugins_and_re_registering_is_fine() {
        let mut t = RouteTable::default();
        t.insert("GET", "/x/:a", "first").unwrap();
        t.insert("GET", "/x/:a", "first").unwrap();
        let err = t.insert("GET", "/x/:b", "second").unwrap_err();
        assert!(err.contains("`first`") && err.contains("`second`"), "{err}");
        t.insert("POST", "/x/:b", "second").unwrap();
    }

    #[test]
    fn bad_routes_are_refused() {
        assert!(parse_route("G T", "/x").is_err());
        assert!(parse_route("GET", "x").is_err());
        assert!(parse_route("GET", "/a//b").is_err());
        assert!(parse_route("GET", "/a/:").is_err());
        assert!(parse_route("GET", "/a/:x/:x").is_err());
    }

    #[test]
    fn route_paths_hold_no_control_characters_spaces_or_escapes() {
        for path in [
            "/a\r\nb",
            "/a\0",
            "/a b",
            "/a%2f",
            "/caf\u{e9}",
            "/a/:x-y",
            "/a\t",
        ] {
            let err = parse_route("GET", path).unwrap_err();
            assert!(err.contains(&format!("{path:?}")), "{err}");
            assert!(!err.contains('\n') && !err.contains('\r'), "{err}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert!(parse_route("GET", &long).unwrap_err().contains("1024"));
        assert!(parse_route("GET", "/a-b.c~d/:id_2/@x").is_ok());
    }

    #[test]
    fn one_normalisation_methods_fold_case_and_paths_do_not() {
        assert_eq!(
            parse_route_line("get   /Notes/:id").unwrap(),
            ("GET".into(), "/Notes/:id".into())
        );
        assert!(parse_route_line("GET /a /b").is_err());
        let mut t = RouteTable::default();
        t.insert("GET", "/NOTES", "a").unwrap();
        // Another plugin may serve the lower-case path: it is another route...
        t.insert("GET", "/notes", "b").unwrap();
        // ...and each request goes to the route of its exact case.
        assert!(matches!(t.lookup("GET", "/NOTES"), Lookup::Found { plugin, .. } if plugin == "a"));
        assert!(matches!(t.lookup("GET", "/notes"), Lookup::Found { plugin, .. } if plugin == "b"));
        assert_eq!(t.lookup("GET", "/Notes"), Lookup::NotFound);
        assert!(t.serves("GET", "/NOTES", "a") && !t.serves("GET", "/notes", "a"));
        assert_eq!((t.count("a"), t.count("b")), (1, 1));
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("a=1&b=x+y&c=%2F&a=2&flag"));
        assert_eq!(q["a"], "2");
        assert_eq!(q["b"], "x y");
        assert_eq!(q["c"], "/");
        assert_eq!(q["flag"], "");
    }
}
