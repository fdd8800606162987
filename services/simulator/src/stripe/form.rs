//! Stripe's request bodies: `application/x-www-form-urlencoded` with
//! bracketed keys for nesting (`line_items[0][price_data][currency]=usd`,
//! `metadata[account]=…`, `expand[]=…`), read into JSON.

use serde_json::{Map, Value};

/// The body as a JSON object; every leaf is a string, as sent.
pub fn parse(body: &[u8]) -> Result<Value, String> {
    let mut root = Value::Object(Map::new());
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = decode(key)?;
        let value = decode(value)?;
        let path = segments(&key)?;
        insert(&mut root, &path, Value::String(value)).map_err(|e| format!("`{key}`: {e}"))?;
    }
    Ok(root)
}

fn decode(bytes: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a bad percent escape")?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8".to_owned())
}

/// `a[b][0][]` → `["a", "b", "0", ""]`.
fn segments(key: &str) -> Result<Vec<String>, String> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    let mut path = vec![head.to_owned()];
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .and_then(|r| r.find(']').map(|end| (&r[..end], &r[end + 1..])))
            .ok_or_else(|| format!("`{key}` has unbalanced brackets"))?;
        path.push(inner.0.to_owned());
        rest = inner.1;
    }
    Ok(path)
}

fn insert(node: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    let wants_array = first.is_empty() || first.parse::<usize>().is_ok();
    if node.is_null() {
        *node = if wants_array {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        };
    }
    match node {
        Value::Object(map) if !first.is_empty() => {
            let child = map.entry(first.clone()).or_insert(Value::Null);
            insert(child, rest, value)
        }
        Value::Array(items) if wants_array => {
            let index = if first.is_empty() {
                items.len()
            } else {
                first.parse::<usize>().map_err(|e| e.to_string())?
            };
            if index > items.len() {
                return Err(format!("index {index} skips elements"));
            }
            if index == items.len() {
                items.push(Value::Null);
            }
            insert(&mut items[index], rest, value)
        }
        _ => Err("mixes a list and an object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_become_objects_and_lists() {
        let body = b"mode=payment&line_items[0][price_data][currency]=usd&line_items[0][quantity]=1\
&line_items[1][price_data][product_data][name]=Deposit+fee+%284%25%29&metadata[account]=a%2Fb&expand[]=x&expand[]=y";
        assert_eq!(
            parse(body).unwrap(),
            json!({
                "mode": "payment",
                "line_items": [
                    {"price_data": {"currency": "usd"}, "quantity": "1"},
                    {"price_data": {"product_data": {"name": "Deposit fee (4%)"}}}
                ],
                "metadata": {"account": "a/b"},
                "expand": ["x", "y"]
            })
        );
        assert!(parse(b"a[0]=1&a[b]=2").is_err());
        assert!(parse(b"a[5]=1").is_err());
        assert!(parse(b"a[=1").is_err());
        assert!(parse(b"a=%zz").is_err());
    }
}
