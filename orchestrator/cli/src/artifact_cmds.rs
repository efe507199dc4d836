//! `deployctl artifact keygen | encrypt | sign | verify | publish`: the
//! firmware a fleet stage dispatches, made and checked on the deploy PC
//! (O1, O3, O6). The formats and checks are `deployctl-firmware`'s; KMS
//! and S3 come from `deployctl-aws-firmware`. Signing and publishing are
//! audited (`artifact.signed`, `artifact.published`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_aws_firmware::bucket;
use deployctl_aws_firmware::{KmsContentKeys, KmsSigner, kms_public_key};
use deployctl_firmware::cipher::{self, ContentKeys, LocalKeys};
use deployctl_firmware::keys::{Algorithm, LocalSigner, PublicKey, Signer};
use deployctl_firmware::manifest::{self, Encryption, Image, Manifest};
use deployctl_firmware::verify::{self, Device, Install};
use serde_json::json;

use crate::exit;
use crate::report::{failed, refused};

#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// Make a manifest signing key (PKCS#8 PEM, written 0600, its public
    /// key beside it as FILE.pub) or, with `--content-key`, a local
    /// key-encryption key for images. Never overwrites a key.
    Keygen {
        /// The signing algorithm.
        #[arg(long, value_parser = ["ed25519", "ecdsa-p256"], default_value = "ed25519")]
        algorithm: String,
        /// Make a key-encryption key (64 hex digits) instead of a signing key.
        #[arg(long, conflicts_with = "algorithm")]
        content_key: bool,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Encrypt an image with AES-256-GCM under a fresh content key, which
    /// a KMS key (`GenerateDataKey`) or a local key-encryption key wraps;
    /// the wrapped key travels in the file's header.
    Encrypt {
        #[arg(value_name = "IMAGE")]
        image: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        keys: WrapKeys,
    },
    /// Sign a manifest for an image (encrypted or not): what it is, which
    /// hardware it runs on, the oldest version it may replace, whether it
    /// is a rollback. An encrypted image is decrypted first, so nothing is
    /// signed that devices could not read.
    #[command(disable_version_flag = true)]
    Sign {
        #[arg(value_name = "IMAGE")]
        image: PathBuf,
        /// The firmware line (devices of another line refuse it).
        #[arg(long)]
        firmware: String,
        /// The image's version (dotted numbers).
        #[arg(long = "version", id = "firmware_version", value_name = "VERSION")]
        version: String,
        /// A hardware model it runs on (repeat for more).
        #[arg(long = "hardware", value_name = "MODEL", required = true)]
        hardware: Vec<String>,
        /// The oldest installed version it may replace.
        #[arg(long, value_name = "VERSION")]
        min_version: Option<String>,
        /// Mark it a signed rollback: devices on a newer version accept it.
        #[arg(long)]
        rollback: bool,
        #[command(flatten)]
        signer: SigningKey,
        #[command(flatten)]
        content: ContentKey,
        /// Where the signed manifest goes (default IMAGE.manifest.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a signed manifest (and an image against it) as a device
    /// would: the signature under the trusted key, the image's digest and
    /// size, that it decrypts, and whether a device of a hardware model on
    /// an installed version may take it. Exit 2 when anything is refused.
    Verify {
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,
        #[command(flatten)]
        trust: TrustedKey,
        /// The image to check against the manifest.
        #[arg(long, value_name = "FILE")]
        image: Option<PathBuf>,
        #[command(flatten)]
        content: ContentKey,
        /// A device's hardware model, for the install check.
        #[arg(long, value_name = "MODEL", requires = "installed")]
        hardware: Option<String>,
        /// The version that device runs now.
        #[arg(long, value_name = "VERSION", requires = "hardware")]
        installed: Option<String>,
    },
    /// Upload an image and its manifest to a versioned S3 bucket (meant to
    /// sit behind CloudFront) and print their HTTPS URLs. The manifest is
    /// verified against the image first; published objects are never
    /// replaced.
    Publish {
        #[arg(value_name = "IMAGE")]
        image: PathBuf,
        /// The signed manifest (default IMAGE.manifest.json).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Where: `s3://BUCKET/PREFIX`.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        to: String,
        /// The CDN's `https://` base URL the printed URLs start with.
        #[arg(long, value_name = "URL")]
        cdn: Option<String>,
        #[command(flatten)]
        trust: TrustedKey,
    },
}

/// The key that wraps a new image's content key.
#[derive(Args)]
pub struct WrapKeys {
    /// A local key-encryption key (`artifact keygen --content-key`).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "kms_key",
        required_unless_present = "kms_key"
    )]
    key_file: Option<PathBuf>,
    /// A symmetric KMS key (ID, ARN or alias).
    #[arg(long, value_name = "KEY")]
    kms_key: Option<String>,
}

/// The key a manifest is signed with.
#[derive(Args)]
pub struct SigningKey {
    /// A local PKCS#8 PEM key (`artifact keygen`).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "signing_kms_key",
        required_unless_present = "signing_kms_key"
    )]
    signing_key: Option<PathBuf>,
    /// An ECC_NIST_P256 SIGN_VERIFY KMS key (ID, ARN or alias).
    #[arg(long = "kms-key", value_name = "KEY")]
    signing_kms_key: Option<String>,
}

/// The key a manifest must verify under.
#[derive(Args)]
pub struct TrustedKey {
    /// A `PUBLIC KEY` PEM file (`KEY.pub` from `artifact keygen`).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "trusted_kms_key",
        required_unless_present = "trusted_kms_key"
    )]
    public_key: Option<PathBuf>,
    /// The KMS key that signs (its public key is read with GetPublicKey).
    #[arg(long = "kms-key", value_name = "KEY")]
    trusted_kms_key: Option<String>,
}

/// How an encrypted image's content key is unwrapped.
#[derive(Args)]
pub struct ContentKey {
    /// The local key-encryption key it was encrypted with.
    #[arg(long, value_name = "FILE", conflicts_with = "content_kms")]
    content_key: Option<PathBuf>,
    /// Unwrap with KMS, using the key the image's header names.
    #[arg(long)]
    content_kms: bool,
}

pub fn run(command: &ArtifactCommand, state_dir: &Path, json: bool) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return failed(format!("cannot start the async runtime: {error}")),
    };
    let outcome = runtime.block_on(async {
        match command {
            ArtifactCommand::Keygen {
                algorithm,
                content_key,
                out,
            } => keygen(algorithm, *content_key, out, json),
            ArtifactCommand::Encrypt { image, out, keys } => encrypt(image, out, keys, json).await,
            ArtifactCommand::Sign {
                image,
                firmware,
                version,
                hardware,
                min_version,
                rollback,
                signer,
                content,
                out,
            } => {
                let request = SignRequest {
                    image,
                    firmware,
                    version,
                    hardware,
                    min_version: min_version.as_deref(),
                    rollback: *rollback,
                };
                sign(&request, signer, content, out.as_deref(), state_dir, json).await
            }
            ArtifactCommand::Verify {
                manifest,
                trust,
                image,
                content,
                hardware,
                installed,
            } => {
                let device = hardware.as_deref().zip(installed.as_deref());
                verify_cmd(manifest, trust, image.as_deref(), content, device, json).await
            }
            ArtifactCommand::Publish {
                image,
                manifest,
                to,
                cdn,
                trust,
            } => {
                publish(
                    image,
                    manifest.as_deref(),
                    to,
                    cdn.as_deref(),
                    trust,
                    state_dir,
                    json,
                )
                .await
            }
        }
    });
    match outcome {
        Ok(()) => exit::OK,
        Err(code) => code,
    }
}

/// What a command failed with: refused (bad input, a check that did not
/// hold: nothing written) or failed (a key service or bucket failed).
type Done = Result<(), u8>;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, u8> {
    std::fs::read(path)
        .map_err(|error| refused(format!("cannot read {what} {}: {error}", path.display())))
}

fn read_text(path: &Path, what: &str) -> Result<String, u8> {
    std::fs::read_to_string(path)
        .map_err(|error| refused(format!("cannot read {what} {}: {error}", path.display())))
}

fn write(path: &Path, bytes: &[u8], what: &str) -> Done {
    std::fs::write(path, bytes)
        .map_err(|error| failed(format!("cannot write {what} {}: {error}", path.display())))
}

/// Writes a secret 0600, refusing to replace an existing file: a key
/// overwritten by mistake orphans everything it signed or wrapped.
fn write_secret(path: &Path, text: &str) -> Done {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            refused(format!(
                "{} exists: a key is never overwritten; choose another --out",
                path.display()
            ))
        } else {
            failed(format!("cannot create {}: {error}", path.display()))
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| failed(format!("cannot write {}: {error}", path.display())))
}

fn keygen(algorithm: &str, content_key: bool, out: &Path, json: bool) -> Done {
    if content_key {
        let (keys, text) = LocalKeys::generate().map_err(|e| failed(e.to_string()))?;
        write_secret(out, &text)?;
        report(
            json,
            json!({"keyFile": out, "keyId": keys.key_id()}),
            || {
                format!(
                    "wrote key-encryption key {} ({})",
                    out.display(),
                    keys.key_id()
                )
            },
        );
        return Ok(());
    }
    let algorithm = Algorithm::from_name(algorithm)
        .ok_or_else(|| refused(format!("`{algorithm}` is not a signing algorithm")))?;
    let (signer, pem) = LocalSigner::generate(algorithm).map_err(|e| failed(e.to_string()))?;
    let public = public_path(out);
    if public.exists() {
        return Err(refused(format!(
            "{} exists: a key is never overwritten; choose another --out",
            public.display()
        )));
    }
    write_secret(out, &pem)?;
    write(
        &public,
        signer.public_key().to_pem().as_bytes(),
        "the public key",
    )?;
    report(
        json,
        json!({"signingKey": out, "publicKey": public, "algorithm": algorithm.name(), "keyId": signer.key_id()}),
        || {
            format!(
                "wrote {algorithm} signing key {} (keep it off the deploy PC's shared disks) and its public key {}\nkey ID {}",
                out.display(),
                public.display(),
                signer.key_id()
            )
        },
    );
    Ok(())
}

fn public_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

async fn kms() -> deployctl_aws_firmware::KmsClient {
    deployctl_aws_firmware::kms_client(&deployctl_aws::config::load(None).await)
}

async fn wrap_keys(keys: &WrapKeys) -> Result<Box<dyn ContentKeys>, u8> {
    match (&keys.key_file, &keys.kms_key) {
        (Some(file), _) => local_keys(file).map(|k| Box::new(k) as Box<dyn ContentKeys>),
        (None, Some(key)) => Ok(Box::new(KmsContentKeys::new(kms().await, key.clone()))),
        (None, None) => Err(refused("name the key: --key-file FILE or --kms-key KEY")),
    }
}

fn local_keys(file: &Path) -> Result<LocalKeys, u8> {
    LocalKeys::from_text(&read_text(file, "the key-encryption key")?)
        .map_err(|e| refused(format!("{}: {e}", file.display())))
}

/// The keys that open an encrypted image, or `None` when none was named.
async fn content_keys(content: &ContentKey) -> Result<Option<Box<dyn ContentKeys>>, u8> {
    if let Some(file) = &content.content_key {
        return Ok(Some(Box::new(local_keys(file)?)));
    }
    if content.content_kms {
        // The key is the one each image's header names.
        return Ok(Some(Box::new(KmsContentKeys::new(
            kms().await,
            String::new(),
        ))));
    }
    Ok(None)
}

async fn encrypt(image: &Path, out: &Path, keys: &WrapKeys, json: bool) -> Done {
    let plain = read(image, "the image")?;
    if cipher::Header::read(&plain).is_some() {
        return Err(refused(format!("{} is already encrypted", image.display())));
    }
    let keys = wrap_keys(keys).await?;
    let file = cipher::encrypt(&plain, keys.as_ref())
        .await
        .map_err(|e| failed(format!("cannot encrypt {}: {e}", image.display())))?;
    write(out, &file, "the encrypted image")?;
    let key_id = cipher::Header::read(&file)
        .map(|h| h.wrapped.key_id)
        .unwrap_or_default();
    report(
        json,
        json!({"image": out, "keyId": key_id, "sha256": deployctl_firmware::sha256_hex(&file), "size": file.len()}),
        || {
            format!(
                "wrote {} ({} bytes), content key wrapped by {key_id}",
                out.display(),
                file.len()
            )
        },
    );
    Ok(())
}

struct SignRequest<'a> {
    image: &'a Path,
    firmware: &'a str,
    version: &'a str,
    hardware: &'a [String],
    min_version: Option<&'a str>,
    rollback: bool,
}

async fn signer(key: &SigningKey) -> Result<Box<dyn Signer>, u8> {
    match (&key.signing_key, &key.signing_kms_key) {
        (Some(file), _) => LocalSigner::from_pem(&read_text(file, "the signing key")?)
            .map(|s| Box::new(s) as Box<dyn Signer>)
            .map_err(|e| refused(format!("{}: {e}", file.display()))),
        (None, Some(key)) => KmsSigner::new(kms().await, key)
            .await
            .map(|s| Box::new(s) as Box<dyn Signer>)
            .map_err(|e| failed(e.to_string())),
        (None, None) => Err(refused("name the key: --signing-key FILE or --kms-key KEY")),
    }
}

async fn sign(
    request: &SignRequest<'_>,
    key: &SigningKey,
    content: &ContentKey,
    out: Option<&Path>,
    state_dir: &Path,
    json: bool,
) -> Done {
    let file = read(request.image, "the image")?;
    let encryption = match cipher::Header::read(&file) {
        None => None,
        Some(header) => {
            let keys = content_keys(content).await?.ok_or_else(|| {
                refused(format!(
                    "{} is encrypted: give --content-key FILE or --content-kms, so it is decrypted before it is signed",
                    request.image.display()
                ))
            })?;
            let plain = cipher::decrypt(&file, keys.as_ref())
                .await
                .map_err(|e| refused(format!("{}: {e}", request.image.display())))?;
            Some(Encryption {
                algorithm: cipher::ALGORITHM.into(),
                key_id: header.wrapped.key_id,
                plaintext_sha256: deployctl_firmware::sha256_hex(&plain),
            })
        }
    };
    let manifest = Manifest {
        format: manifest::FORMAT.into(),
        firmware: request.firmware.to_owned(),
        version: request.version.to_owned(),
        hardware: request.hardware.to_vec(),
        image: Image {
            sha256: deployctl_firmware::sha256_hex(&file),
            size: file.len() as u64,
            encryption,
        },
        min_version: request.min_version.map(str::to_owned),
        rollback: request.rollback,
        signed_at: deployctl_time::format_ms(deployctl_time::now_ms()),
    };
    manifest.check().map_err(refused)?;
    let signer = signer(key).await?;
    let envelope = deployctl_firmware::envelope::sign(&manifest, signer.as_ref())
        .await
        .map_err(|e| failed(format!("cannot sign: {e}")))?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_path(request.image));
    write(&out, envelope.as_bytes(), "the manifest")?;
    let digest = deployctl_firmware::sha256_hex(envelope.as_bytes());
    audit(
        state_dir,
        What::new(AuditAction::ArtifactSigned)
            .target(format!("{}@{}", manifest.firmware, manifest.version))
            .detail(format!(
                "manifest sha256:{digest} signed by {} ({}); image sha256:{}{}",
                signer.key_id(),
                signer.algorithm(),
                manifest.image.sha256,
                if manifest.rollback { "; rollback" } else { "" }
            )),
    );
    report(
        json,
        json!({"manifest": out, "sha256": digest, "signer": signer.key_id(), "firmware": manifest.firmware, "version": manifest.version, "rollback": manifest.rollback}),
        || {
            format!(
                "signed {}@{}{} for {} → {}\nmanifest sha256:{digest}, signer {}",
                manifest.firmware,
                manifest.version,
                if manifest.rollback { " (rollback)" } else { "" },
                manifest.hardware.join(", "),
                out.display(),
                signer.key_id()
            )
        },
    );
    Ok(())
}

fn manifest_path(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

async fn trusted_key(trust: &TrustedKey) -> Result<PublicKey, u8> {
    match (&trust.public_key, &trust.trusted_kms_key) {
        (Some(file), _) => PublicKey::from_pem(&read_text(file, "the public key")?)
            .map_err(|e| refused(format!("{}: {e}", file.display()))),
        (None, Some(key)) => kms_public_key(&kms().await, key)
            .await
            .map_err(|e| failed(e.to_string())),
        (None, None) => Err(refused(
            "name the trusted key: --public-key FILE or --kms-key KEY",
        )),
    }
}

async fn verify_cmd(
    manifest_file: &Path,
    trust: &TrustedKey,
    image: Option<&Path>,
    content: &ContentKey,
    device: Option<(&str, &str)>,
    json: bool,
) -> Done {
    let key = trusted_key(trust).await?;
    let envelope = read(manifest_file, "the manifest")?;
    let verified = verify::verify_manifest(&envelope, &key)
        .map_err(|e| refused(format!("{}: {e}", manifest_file.display())))?;
    let manifest = &verified.manifest;
    let mut checked = vec![format!("signature by {}", verified.signer)];
    if let Some(image) = image {
        let file = read(image, "the image")?;
        verify::check_image(manifest, &file)
            .map_err(|e| refused(format!("{}: {e}", image.display())))?;
        checked.push("image digest and size".into());
        if let Some(encryption) = &manifest.image.encryption
            && let Some(keys) = content_keys(content).await?
        {
            let plain = cipher::decrypt(&file, keys.as_ref())
                .await
                .map_err(|e| refused(format!("{}: {e}", image.display())))?;
            if deployctl_firmware::sha256_hex(&plain) != encryption.plaintext_sha256 {
                return Err(refused(format!(
                    "{}: the decrypted image's SHA-256 differs from the manifest's plaintextSha256",
                    image.display()
                )));
            }
            checked.push("decryption".into());
        }
    }
    let mut install = None;
    if let Some((hardware, installed)) = device {
        let decision = verify::check_install(
            manifest,
            &Device {
                firmware: &manifest.firmware,
                hardware,
                installed,
            },
        )
        .map_err(|e| refused(format!("{}: {e}", manifest_file.display())))?;
        install = Some(match decision {
            Install::Upgrade => "upgrade",
            Install::Rollback => "rollback",
            Install::AlreadyInstalled => "already installed",
        });
        checked.push(format!("install on {hardware} at {installed}"));
    }
    report(
        json,
        json!({
            "manifest": manifest_file, "sha256": verified.digest, "signer": verified.signer,
            "firmware": manifest.firmware, "version": manifest.version, "hardware": manifest.hardware,
            "rollback": manifest.rollback, "encrypted": manifest.image.encryption.is_some(),
            "checked": checked, "install": install,
        }),
        || {
            let mut text = format!(
                "{}@{}{}: verified ({})",
                manifest.firmware,
                manifest.version,
                if manifest.rollback { " (rollback)" } else { "" },
                checked.join("; ")
            );
            if let Some(install) = install {
                text.push_str(&format!("\ninstall: {install}"));
            }
            text
        },
    );
    Ok(())
}

async fn publish(
    image: &Path,
    manifest_file: Option<&Path>,
    to: &str,
    cdn: Option<&str>,
    trust: &TrustedKey,
    state_dir: &Path,
    json: bool,
) -> Done {
    if let Some(cdn) = cdn
        && !cdn.starts_with("https://")
    {
        return Err(refused(format!(
            "--cdn `{cdn}` is not an https:// URL: devices download over HTTPS only"
        )));
    }
    let manifest_file = manifest_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_path(image));
    let key = trusted_key(trust).await?;
    let envelope = read(&manifest_file, "the manifest")?;
    let verified = verify::verify_manifest(&envelope, &key)
        .map_err(|e| refused(format!("{}: {e}", manifest_file.display())))?;
    let file = read(image, "the image")?;
    verify::check_image(&verified.manifest, &file)
        .map_err(|e| refused(format!("{}: {e}", image.display())))?;
    let name = image
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| refused(format!("{} has no file name", image.display())))?;
    let s3 = bucket::s3_client(&deployctl_aws::config::load(None).await);
    let [image_object, manifest_object] = bucket::publish(&s3, to, name, &file, &envelope, cdn)
        .await
        .map_err(|e| match e.class() {
            deployctl_adapter::ErrorClass::Permanent => refused(e.to_string()),
            _ => failed(e.to_string()),
        })?;
    let manifest = &verified.manifest;
    audit(
        state_dir,
        What::new(AuditAction::ArtifactPublished)
            .target(format!("{}@{}", manifest.firmware, manifest.version))
            .detail(format!(
                "{} and {} (manifest sha256:{}, signer {})",
                image_object.object, manifest_object.object, verified.digest, verified.signer
            )),
    );
    report(
        json,
        json!({
            "image": {"s3": image_object.object.to_string(), "url": image_object.url},
            "manifest": {"s3": manifest_object.object.to_string(), "url": manifest_object.url, "sha256": verified.digest},
        }),
        || {
            format!(
                "published {}@{}\n  image     {}\n            {}\n  manifest  {}\n            {}",
                manifest.firmware,
                manifest.version,
                image_object.object,
                image_object.url,
                manifest_object.object,
                manifest_object.url
            )
        },
    );
    Ok(())
}

fn audit(state_dir: &Path, what: What) {
    if let Ok((_, trail)) = crate::audited::open(state_dir) {
        let initiator = deployctl_engine::run::initiator();
        crate::audited::record(&trail, &initiator, what, Outcome::ok());
    }
}

fn report(json: bool, document: serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        crate::print_json(&document);
    } else {
        outln!("{}", text());
    }
}
