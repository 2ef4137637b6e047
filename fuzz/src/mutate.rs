//! Byte-level mutations of an input: what structured generation never produces (a cut in the
//! middle of a token, a chunk repeated thousands of times into deep nesting, a splice of two
//! inputs, a token from the parsers' own vocabulary dropped anywhere).

use crate::rng::Rng;

/// Tokens the parsers branch on, inserted at random places.
const DICTIONARY: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b":",
    b",",
    b"<<:",
    b"&a ",
    b"*a",
    b"!!int ",
    b"!tag ",
    b"---\n",
    b"...\n",
    b"? ",
    b"- ",
    b"|\n",
    b"\t",
    b"\r\n",
    b"\\u0000",
    b"\\ud800",
    b"%",
    b"%2F",
    b"%00",
    b"&",
    b";",
    b"=",
    b"?",
    b"/",
    b"..",
    b"k8s\0",
    b"\x0a",
    b"\x12",
    b"\xff\xff\xff\xff\x0f",
    b"\x80",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"$patch",
    b"$retainKeys",
    b"gracePeriodSeconds",
    b"dryRun",
    b"1e400",
    b"-0",
    b"00",
    b"0o0",
    b"~1",
    b"~0",
    b"null",
];

/// Inputs are capped so that one iteration stays short; the hostile corpus goes past this.
pub const MAX_LEN: usize = 64 * 1024;

/// Applies one to four random mutations to `input`; `other` is a second input to splice from.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..=rng.below(4) {
        one(rng, input, other);
    }
    input.truncate(MAX_LEN);
}

fn one(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let at = if input.is_empty() {
        0
    } else {
        rng.index(input.len() + 1)
    };
    match rng.below(8) {
        0 if !input.is_empty() => {
            let i = rng.index(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.index(input.len());
            input[i] = rng.next_u64() as u8;
        }
        2 => {
            let end = (at + 1 + rng.index(16)).min(input.len());
            if at < end {
                input.drain(at..end);
            }
        }
        3 => {
            let token = rng.pick(DICTIONARY);
            input.splice(at..at, token.iter().copied());
        }
        4 if at < input.len() => {
            // A chunk repeated: `[[[[`, `- - - -`, `a: a: a:`, deep nesting.
            let end = (at + 1 + rng.index(4)).min(input.len());
            let chunk = input[at..end].to_vec();
            let times = 1 + rng.index(2000);
            let repeated: Vec<u8> = chunk
                .iter()
                .copied()
                .cycle()
                .take(chunk.len() * times)
                .collect();
            input.splice(at..at, repeated);
        }
        5 if !other.is_empty() => {
            let from = rng.index(other.len());
            let end = (from + 1 + rng.index(64)).min(other.len());
            input.splice(at..at, other[from..end].iter().copied());
        }
        6 => input.truncate(at),
        _ => input.insert(at, rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_changes_inputs_and_respects_the_cap() {
        let mut rng = Rng::new(3);
        let mut changed = 0;
        for _ in 0..500 {
            let original = b"{\"kind\":\"DeleteOptions\",\"gracePeriodSeconds\":0}".to_vec();
            let mut input = original.clone();
            mutate(&mut rng, &mut input, b"[[[[]]]]");
            assert!(input.len() <= MAX_LEN);
            changed += usize::from(input != original);
        }
        assert!(
            changed > 400,
            "only {changed} of 500 mutations changed the input"
        );
    }
}
