//! `POST /v1/embeddings` wire types: the public API, and the upstream format
//! of OpenAI's embedding models.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Extra;

/// An embeddings request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// An alias (`embed-small`), or an embedding model id.
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// The vector size wanted; the model's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// The end user, passed to providers that take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Model Router: how to order an alias's models (`cheap`, `fast`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<String>,
    /// Fields not modelled here.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The four shapes `input` may take. Token ids are those of the model's own
/// tokenizer, so only OpenAI models accept them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One input as token ids.
    Tokens(Vec<u32>),
    /// Several inputs as token ids.
    TokenLists(Vec<Vec<u32>>),
}

/// Why `input` could not be read.
const INPUT_SHAPE: &str =
    "must be a string, an array of strings, an array of token ids or an array of token-id arrays";

impl TryFrom<Value> for EmbeddingInput {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        let items = match value {
            Value::String(text) => return Ok(EmbeddingInput::Text(text)),
            Value::Array(items) => items,
            _ => return Err(INPUT_SHAPE.into()),
        };
        match items.first() {
            None | Some(Value::String(_)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(text) => Ok(text),
                    _ => Err(format!("item {i} is not a string; {INPUT_SHAPE}")),
                })
                .collect::<Result<_, _>>()
                .map(EmbeddingInput::Texts),
            Some(Value::Number(_)) => token_ids(&items, None).map(EmbeddingInput::Tokens),
            Some(Value::Array(_)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Array(ids) => token_ids(ids, Some(i)),
                    _ => Err(format!(
                        "item {i} is not an array of token ids; {INPUT_SHAPE}"
                    )),
                })
                .collect::<Result<_, _>>()
                .map(EmbeddingInput::TokenLists),
            Some(_) => Err(INPUT_SHAPE.into()),
        }
    }
}

fn token_ids(items: &[Value], list: Option<usize>) -> Result<Vec<u32>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, id)| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| match list {
                    Some(l) => {
                        format!("item {l}, token {i}: token ids are integers from 0 to 4294967295")
                    }
                    None => format!("token {i}: token ids are integers from 0 to 4294967295"),
                })
        })
        .collect()
}

impl EmbeddingInput {
    /// How many vectors the request asks for.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) | EmbeddingInput::Tokens(_) => 1,
            EmbeddingInput::Texts(texts) => texts.len(),
            EmbeddingInput::TokenLists(lists) => lists.len(),
        }
    }

    /// Whether it asks for none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How vectors are written in the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON numbers.
    #[default]
    Float,
    /// Base64 of the little-endian float32 bytes.
    Base64,
}

/// An embeddings response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input, in input order.
    pub data: Vec<Embedding>,
    /// The model that produced the vectors.
    pub model: String,
    /// Input tokens (embeddings have no output).
    pub usage: EmbeddingUsage,
}

/// One vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// The position of its input.
    pub index: usize,
    /// The vector, as asked by `encoding_format`.
    pub embedding: EmbeddingVector,
}

/// A vector as floats or as base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// Token counts of an embeddings call; `total_tokens` equals `prompt_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// The same.
    pub total_tokens: u64,
    /// What the call cost, in USD as an exact decimal string: set by the
    /// gateway (as chat's `usage.cost`), absent from providers' answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<EmbeddingInput, String> {
        serde_json::from_str::<EmbeddingInput>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn each_input_shape_reads_and_bad_ones_are_named() {
        assert_eq!(input(r#""hi""#).unwrap(), EmbeddingInput::Text("hi".into()));
        assert_eq!(input(r#"["a","b"]"#).unwrap().len(), 2);
        assert_eq!(
            input("[1,2,3]").unwrap(),
            EmbeddingInput::Tokens(vec![1, 2, 3])
        );
        assert_eq!(
            input("[[1],[2,3]]").unwrap(),
            EmbeddingInput::TokenLists(vec![vec![1], vec![2, 3]])
        );
        assert!(input("[]").unwrap().is_empty());
        assert!(input(r#"["a",1]"#)
            .unwrap_err()
            .contains("item 1 is not a string"));
        assert!(input("[1,-2]").unwrap_err().contains("token 1"));
        assert!(input("[[1],[2.5]]")
            .unwrap_err()
            .contains("item 1, token 0"));
        assert!(input("{}").unwrap_err().contains("must be a string"));
    }

    #[test]
    fn request_round_trips_with_extra_fields() {
        let request: EmbeddingRequest = serde_json::from_str(
            r#"{"model":"embed-small","input":"x","encoding_format":"base64","dimensions":8,"x_custom":1}"#,
        )
        .unwrap();
        assert_eq!(request.encoding_format, Some(EncodingFormat::Base64));
        let back = serde_json::to_value(&request).unwrap();
        assert_eq!(back["input"], "x");
        assert_eq!(back["x_custom"], 1);
    }
}
