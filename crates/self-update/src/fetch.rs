//! Reading a feed, a signature or a binary from a path or an `https://` URL, never more than
//! a cap (RELIABILITY F5): HTTPS goes through `status_http::download`, which verifies the
//! server's certificate and follows no redirect.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::{FeedLocation, UpdateError};

/// How long one connect, read or write of a download may take.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies what `from` holds into `sink`: at most `max` bytes, or an error
/// ([`UpdateError::TooLarge`]) as soon as there are more. Returns the bytes copied.
pub(crate) fn fetch(
    from: &FeedLocation,
    what: &str,
    ca_file: Option<&Path>,
    max: u64,
    sink: &mut dyn Write,
) -> Result<u64, UpdateError> {
    let too_large = || UpdateError::TooLarge {
        what: what.to_owned(),
        max,
    };
    match from {
        FeedLocation::Path(path) => {
            let io = |e| UpdateError::io(format!("read the {what} {}", path.display()), e);
            let file = File::open(path).map_err(io)?;
            // One byte beyond the cap tells "exactly max" from "more".
            let copied = std::io::copy(&mut file.take(max.saturating_add(1)), sink).map_err(io)?;
            if copied > max {
                return Err(too_large());
            }
            Ok(copied)
        }
        FeedLocation::Https(url) => {
            match status_http::download(url, ca_file, max, NETWORK_TIMEOUT, sink) {
                Ok(n) => Ok(n),
                Err(status_http::ClientError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::FileTooLarge =>
                {
                    Err(too_large())
                }
                Err(source) => Err(UpdateError::Fetch {
                    what: what.to_owned(),
                    url: crate::cap(url),
                    source,
                }),
            }
        }
    }
}

/// What `from` holds, at most `max` bytes.
pub(crate) fn fetch_small(
    from: &FeedLocation,
    what: &str,
    ca_file: Option<&Path>,
    max: u64,
) -> Result<Vec<u8>, UpdateError> {
    let mut bytes = Vec::new();
    fetch(from, what, ca_file, max, &mut bytes)?;
    Ok(bytes)
}
