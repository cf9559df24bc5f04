use clap::Parser;

fn main() {
    let cli = fleetfix::Cli::parse();
    std::process::exit(fleetfix::main(cli));
}
