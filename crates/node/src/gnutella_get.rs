//! Downloading a Gnutella hit's file over HTTP.

use crate::gnutella_types::{GnutellaFile, GnutellaSource};
use std::path::PathBuf;

impl crate::Client {
    /// Downloads one file of a Gnutella hit over HTTP/1.1 into the
    /// downloads folder: by `urn:sha1` (N2R) when the hit gave one, else
    /// by `/get/INDEX/NAME`; a `NAME.part` left by an earlier try is
    /// resumed with `Range`; the SHA-1 is checked at the end. Returns the
    /// file's path. A firewalled servent (one that asks for a Push) is not
    /// reached: Gnutella pushes are not sent yet.
    pub async fn get_gnutella(
        &self,
        source: &GnutellaSource,
        name: &str,
        file: GnutellaFile,
        size: Option<u64>,
    ) -> Result<PathBuf, crate::NodeError> {
        use rutella_gnutella::download::{download, Download, DownloadConfig};
        use rutella_gnutella::http::Target;
        if source.push {
            return Err(crate::NodeError::Other(
                "this Gnutella servent is firewalled (it asks for a push), which rutella does not send yet".into(),
            ));
        }
        let base = rutella_transfer::sanitize_basename(name).map_err(|e| {
            crate::NodeError::Other(format!("cannot save a file of that name: {e}"))
        })?;
        let dir = self.downloads_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| crate::NodeError::Downloads {
                path: dir.clone(),
                source,
            })?;
        let dest = dir.join(&base);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            return Err(crate::NodeError::Other(format!(
                "{} already exists",
                dest.display()
            )));
        }
        let part = dir.join(format!("{base}.part"));
        let target = match file.sha1 {
            Some(h) => Target::Sha1(h),
            None => Target::Index {
                index: file.index,
                name: name.to_string(),
            },
        };
        let cfg = DownloadConfig {
            connect_timeout: self.config.connect_timeout,
            read_timeout: self.config.idle_timeout,
            ..DownloadConfig::default()
        };
        let d = Download {
            addr: source.servent,
            target,
            sha1: file.sha1,
            size,
        };
        download(&d, &part, &dest, &cfg)
            .await
            .map_err(|e| crate::NodeError::Other(format!("Gnutella download failed: {e}")))?;
        Ok(dest)
    }
}
