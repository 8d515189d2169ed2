//! Printing typed errors with their causes.

/// `err` and each of its sources, joined by ": " (what the CLI prints for an error and its
/// causes, `{:#}` at its edge).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_in_order() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(super::chain(&e), "outer: middle: inner");
    }
}
