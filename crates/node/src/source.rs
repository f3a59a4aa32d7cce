//! The library as the transfer server sees it.

use rutella_store::Library;
use rutella_transfer::{FileSource, SourceFile};

/// Serves exactly what the library resolves: nothing outside the shares.
pub(crate) struct LibrarySource(pub(crate) Library);

impl FileSource for LibrarySource {
    fn by_name(&self, name: &str) -> Option<SourceFile> {
        match self.0.resolve(name) {
            Ok(f) => Some(SourceFile {
                path: f.path,
                size: f.size,
            }),
            Err(e) => {
                tracing::info!(name = %name.escape_debug(), reason = %e, "refusing a download request");
                None
            }
        }
    }

    fn by_hash(&self, hash: &[u8; 32]) -> Option<SourceFile> {
        self.0.by_hash(hash).map(|f| SourceFile {
            path: f.path,
            size: f.size,
        })
    }
}
