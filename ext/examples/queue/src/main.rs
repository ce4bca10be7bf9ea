//! `pulp-queue`: the `pulp` command line with `queue.sqlite` added. This is
//! the whole of a custom host.

fn main() -> std::process::ExitCode {
    pulp_host::cli::main(|host| host.gated(pulp_queue::QueueCapability))
}
