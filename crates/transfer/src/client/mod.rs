//! The downloading side of both exchanges: the classic client, and the
//! rutella protocol's connection (requests by hash, verified trees).

pub(crate) mod classic;
pub(crate) mod rutella;
