//! Where a request's instruction ends and its material begins.
//!
//! "Summarise in one sentence: <a page of text>" and "Fix the grammar:
//! '<a sentence>'" ask for little whatever the material says; the words of
//! the material (a quoted review praising "race condition handling", a
//! pasted report) should not read as the task. Material starts at the first
//! of: a code fence; a colon, blank line or quote after at least a few words
//! of instruction, when what follows is longer than what came before (a
//! quote must run to the end). A short last paragraph after the material
//! ("…\n\nWhat was the revenue in Q3?") is instruction again.

use memchr::memmem;

/// The parts of a last user turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    pub instruction: &'a str,
    /// A short closing question or request after the material, if any.
    pub closing: &'a str,
    pub material: &'a str,
}

const MIN_INSTRUCTION: usize = 6;
const MAX_CLOSING: usize = 400;
const QUOTES: [char; 5] = ['"', '\'', '“', '«', '‘'];

fn longer_after(t: &str, at: usize) -> bool {
    at >= MIN_INSTRUCTION && (t.len() - at) * 2 > at * 3
}

fn colon(t: &str) -> Option<usize> {
    let bytes = t.as_bytes();
    t.match_indices(':').map(|(i, _)| i).find(|&i| {
        let next = bytes.get(i + 1).copied().unwrap_or(b' ');
        let prev = if i == 0 { b' ' } else { bytes[i - 1] };
        let url_or_time = next == b'/' || (prev.is_ascii_digit() && next.is_ascii_digit());
        !url_or_time && longer_after(t, i + 1)
    })
}

fn quote(t: &str) -> Option<usize> {
    let trimmed = t.trim_end_matches(|c: char| c.is_whitespace() || ".?!)".contains(c));
    let last = trimmed.chars().last()?;
    if !QUOTES.contains(&last) && !"”»’".contains(last) {
        return None;
    }
    t.char_indices()
        .filter(|(i, c)| {
            QUOTES.contains(c)
                && t[..*i]
                    .chars()
                    .last()
                    .is_none_or(|p| p.is_whitespace() || p == ':')
        })
        .map(|(i, _)| i)
        .find(|&i| i >= MIN_INSTRUCTION && trimmed.len() - i >= 12)
}

fn paragraph(t: &str) -> Option<usize> {
    memmem::find_iter(t.as_bytes(), "\n\n").find(|&i| longer_after(t, i))
}

/// Splits a last user turn.
pub fn split(t: &str) -> Parts<'_> {
    let fence = memmem::find(t.as_bytes(), b"```");
    let start = [fence, colon(t), quote(t), paragraph(t)]
        .into_iter()
        .flatten()
        .min();
    let Some(start) = start else {
        return Parts {
            instruction: t,
            closing: "",
            material: "",
        };
    };
    let rest = &t[start..];
    let closing = memmem::rfind(rest.as_bytes(), b"\n\n")
        .map(|i| &rest[i..])
        .filter(|c| c.len() <= MAX_CLOSING && c.len() * 4 < rest.len());
    let material = &rest[..rest.len() - closing.map_or(0, str::len)];
    Parts {
        instruction: &t[..start],
        closing: closing.unwrap_or_default(),
        material,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(t: &str) -> (&str, &str, &str) {
        let p = split(t);
        (p.instruction, p.closing.trim(), p.material)
    }

    #[test]
    fn material_starts_at_a_colon_quote_fence_or_paragraph() {
        let long =
            "The library will close early on Friday for staff training and reopen on Saturday.";
        let t = format!("Summarise in one sentence: {long}");
        assert_eq!(parts(&t).0, "Summarise in one sentence");
        let q = "Is this spam? 'Congratulations!!! You won a $1000 gift card, click here.'";
        assert_eq!(parts(q).0, "Is this spam? ");
        let code = "Review this:\n```rust\nfn main() { let x = 1; println!(\"{x}\"); }\n```";
        assert_eq!(parts(code).0, "Review this");
        let doc = format!(
            "Here are the notes. What date did we agree?\n\n{}",
            long.repeat(5)
        );
        assert_eq!(parts(&doc).0, "Here are the notes. What date did we agree?");
        let closing = format!(
            "Read this report:\n\n{}\n\nWhat was the revenue in Q3?",
            long.repeat(9)
        );
        assert_eq!(parts(&closing).1, "What was the revenue in Q3?");
    }

    #[test]
    fn any_text_splits_into_its_own_parts() {
        let pieces = [
            "'", "\"", ":", "\n\n", "```", "é", "分", " ", "a", "?", "«", "»", ".", "x: y",
        ];
        let mut seed = 7u64;
        for _ in 0..2_000 {
            let mut t = String::new();
            for _ in 0..(seed % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                t.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let p = split(&t);
            let whole = format!("{}{}{}", p.instruction, p.material, p.closing);
            assert_eq!(whole, t, "the parts are the text, in order");
        }
    }

    #[test]
    fn plain_requests_urls_times_and_short_quotes_stay_instruction() {
        for t in [
            "Design a URL shortener handling 100k writes/s with custom aliases and analytics.",
            "Is 'data' singular or plural?",
            "Fetch https://example.com/docs at 10:30 and tell me what changed since last week.",
            "Prove that the square root of 2 is irrational.",
        ] {
            assert_eq!(parts(t), (t, "", ""), "{t}");
        }
    }
}
