//! `pulp`: run, check, inspect and scaffold WebAssembly plugins. The whole
//! command line lives in the library ([`pulp_host::cli`]), so a custom host
//! with more capabilities is this file plus one `.gated(..)`.

fn main() -> std::process::ExitCode {
    pulp_host::cli::main(|host| host)
}
