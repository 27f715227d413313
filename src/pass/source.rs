//! Where a pass's apps body comes from: Marathon's `/v2/apps`, or a file in its place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::marathon::client::{self, Client};

/// Where the apps come from.
#[derive(Clone)]
pub enum Source {
    /// Marathon's REST API.
    Marathon(Arc<Client>),
    /// A file holding a `/v2/apps` body (`--apps-file`), re-read each pass and capped by
    /// `--marathon-max-body-bytes` (live mode).
    File(PathBuf),
    /// A file read once by mapping it (one-shot mode: not rewritten while it runs).
    MappedFile(PathBuf),
    /// A body held in memory (tests).
    #[cfg(test)]
    Body(Bytes),
}

/// Why the apps body could not be fetched. The last good config keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Marathon could not be reached or answered with an error (every source in the message).
    #[error("{}", .0.chain())]
    Marathon(client::Error),
    /// The apps file could not be read.
    #[error("cannot read apps file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The apps file is larger than `--marathon-max-body-bytes`.
    #[error("apps file {} is larger than {max} bytes (--marathon-max-body-bytes)", path.display())]
    TooBig {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
}

impl Source {
    /// Fetches the apps body and names its origin for error messages. A file larger than
    /// `max_bytes` is refused like a Marathon body would be.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn fetch(&self, max_bytes: u64) -> Result<(Bytes, String), FetchError> {
        match self {
            Source::Marathon(client) => {
                let body = client.apps_json().await.map_err(FetchError::Marathon)?;
                Ok((body, format!("Marathon {}", client.current_host())))
            }
            Source::File(path) => {
                let body = read_capped(path, max_bytes).await?;
                Ok((Bytes::from(body), path.display().to_string()))
            }
            Source::MappedFile(path) => Ok((read_apps_file(path)?, path.display().to_string())),
            #[cfg(test)]
            Source::Body(body) => Ok((body.clone(), "test body".to_owned())),
        }
    }
}

/// Reads an apps file of at most `max_bytes` (`--marathon-max-body-bytes`).
async fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    use tokio::io::AsyncReadExt;
    let failed = |error| FetchError::Read {
        path: path.to_owned(),
        error,
    };
    let too_big = || FetchError::TooBig {
        path: path.to_owned(),
        max: max_bytes,
    };
    let file = tokio::fs::File::open(path).await.map_err(failed)?;
    let len = file.metadata().await.map_err(failed)?.len();
    if len > max_bytes {
        return Err(too_big());
    }
    // Sized up front (as `fs::read` does): growing a 28 MB buffer by doubling costs memory.
    let mut body = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    // The file may grow after the size check: never read more than the cap (+1 to notice).
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut body)
        .await
        .map_err(failed)?;
    if body.len() as u64 > max_bytes {
        return Err(too_big());
    }
    Ok(body)
}

/// Maps an apps file into memory: unlike reading it, this neither zeroes nor copies tens of
/// megabytes (about 10 ms for a 27.7 MB body of 10,000 apps).
///
/// # Errors
/// [`FetchError::Read`].
pub fn read_apps_file(path: &Path) -> Result<Bytes, FetchError> {
    let failed = |error| FetchError::Read {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    if file.metadata().map_err(failed)?.len() == 0 {
        return Ok(Bytes::new());
    }
    super::mapped::map(&file).map_err(failed)
}
