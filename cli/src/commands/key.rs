//! `warden key`: the deployment's signing key.

use std::io::Write;
use std::path::{Path, PathBuf};

use warden::seal::signing::SigningKey;

use crate::output::{self, Usage};

/// Arguments of `warden key`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Generate an ed25519 signing key: PREFIX.key (the secret, mode 600: give it to the
    /// writers as --signing-key or WARDEN_SIGNING_KEY, keep it out of the journal's
    /// backups) and PREFIX.pub (the public key: give it to auditors, who check with
    /// `warden verify --key PREFIX.pub`). Neither file is ever overwritten.
    Generate {
        /// Where to write: PREFIX.key and PREFIX.pub.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Print the public key and key id of a signing or public key file.
    Show {
        /// A .key or .pub file.
        file: PathBuf,
    },
}

/// Runs `warden key`.
pub fn run(args: &Args) -> anyhow::Result<u8> {
    match &args.command {
        Command::Generate { out } => generate(out),
        Command::Show { file } => show(file),
    }
}

fn with_extension(prefix: &Path, extension: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

fn generate(prefix: &Path) -> anyhow::Result<u8> {
    let secret_path = with_extension(prefix, "key");
    let public_path = with_extension(prefix, "pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(Usage(format!(
                "{} exists; a key is never overwritten (choose another --out)",
                path.display()
            ))
            .into());
        }
    }
    let key = SigningKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&secret_path)
        .map_err(|e| Usage(format!("cannot create {}: {e}", secret_path.display())))?;
    file.write_all(key.to_file_text().as_bytes())?;
    file.sync_all()?;
    let public = key.public_key();
    std::fs::write(&public_path, public.to_file_text())
        .map_err(|e| Usage(format!("cannot write {}: {e}", public_path.display())))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "key id       {}", public.key_id())?;
    writeln!(
        out,
        "signing key  {} (secret, mode 600: --signing-key or WARDEN_SIGNING_KEY for writers)",
        secret_path.display()
    )?;
    writeln!(
        out,
        "public key   {} (for auditors: warden verify --all --key {})",
        public_path.display(),
        public_path.display()
    )?;
    Ok(output::exit::COMPLETED)
}

fn show(file: &Path) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?;
    let public = if text
        .trim_start()
        .starts_with(warden::seal::signing::SIGNING_KEY_HEADER)
    {
        output::read_signing_key(file)?.public_key()
    } else {
        output::read_public_key(file)?
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "key id      {}", public.key_id())?;
    write!(out, "public key  {}", public.to_file_text())?;
    Ok(output::exit::COMPLETED)
}
