use clap::Parser;

fn main() {
    let cli = fleetfix::cli::Cli::parse();
    std::process::exit(fleetfix::app::main(cli));
}
