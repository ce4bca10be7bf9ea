//! noop: takes no input, returns nothing. echo: returns its input.

use extism_pdk::{plugin_fn, FnResult};

#[plugin_fn]
pub fn noop() -> FnResult<()> {
    Ok(())
}

#[plugin_fn]
pub fn echo(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(input)
}
