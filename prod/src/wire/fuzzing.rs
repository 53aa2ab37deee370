//! Support for the `wire_frame` fuzz target and the tests that feed the wire layer random
//! bytes: every decoder run over the same input.

use bytes::BytesMut;
use prost::Message;

use crate::wire::frame::FrameCodec;
use crate::wire::messages::*;

/// A decoder that accepted bytes but did not give a stable encoding back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}: decoding its own encoding gave {detail}")]
pub struct Unstable {
    pub message: &'static str,
    pub detail: String,
}

/// Decodes `data` as this message; if that works, checks that the message's encoding decodes
/// again and encodes to the same bytes.
fn check_message<M: Message + Default>(name: &'static str, data: &[u8]) -> Result<(), Unstable> {
    let Ok(message) = M::decode(data) else {
        return Ok(());
    };
    let once = message.encode_to_vec();
    let again = M::decode(once.as_slice())
        .map_err(|error| Unstable { message: name, detail: error.to_string() })?
        .encode_to_vec();
    if once == again {
        Ok(())
    } else {
        Err(Unstable { message: name, detail: format!("{again:02x?} instead of {once:02x?}") })
    }
}

macro_rules! check_messages {
    ($data:expr; $($message:ident),* $(,)?) => {
        $(check_message::<$message>(stringify!($message), $data)?;)*
    };
}

/// Runs `data` through the request and response frame decoders (with a small maximum, until
/// they stop) and through the decoder of every message. Never panics; an `Err` names a decoder
/// whose output does not survive a re-encoding.
pub fn decode_everything(data: &[u8]) -> Result<(), Unstable> {
    let codec = FrameCodec::new(4096);
    let mut requests = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode_request(&mut requests) {
        let mut encoded = BytesMut::new();
        if codec.encode_request(&frame, &mut encoded).is_err() {
            return Err(Unstable { message: "RequestFrame", detail: "no encoding".into() });
        }
        if codec.decode_request(&mut encoded) != Ok(Some(frame)) {
            return Err(Unstable { message: "RequestFrame", detail: "a different frame".into() });
        }
    }
    let _ = codec.check_eof(&requests);
    let mut responses = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode_response(&mut responses) {}

    check_messages!(data;
        ErrorResponse, ApiVersionsRequest, ApiVersionsResponse, PbApiVersion,
        PbTablePath, PbPhysicalTablePath, PbKeyValue,
        MetadataRequest, MetadataResponse, PbServerNode, PbTableMetadata, PbPartitionMetadata,
        PbBucketMetadata,
        CreateDatabaseRequest, CreateDatabaseResponse, DropDatabaseRequest, DropDatabaseResponse,
        ListDatabasesRequest, ListDatabasesResponse, PbDatabaseSummary, DatabaseExistsRequest,
        DatabaseExistsResponse, GetDatabaseInfoRequest, GetDatabaseInfoResponse,
        CreateTableRequest, CreateTableResponse, DropTableRequest, DropTableResponse,
        GetTableInfoRequest, GetTableInfoResponse, ListTablesRequest, ListTablesResponse,
        TableExistsRequest, TableExistsResponse, GetTableSchemaRequest, GetTableSchemaResponse,
        InitWriterRequest, InitWriterResponse,
        GetFileSystemSecurityTokenRequest, GetFileSystemSecurityTokenResponse,
        PutKvRequest, PbPutKvReqForBucket, PutKvResponse, PbPutKvRespForBucket,
        LookupRequest, PbLookupReqForBucket, LookupResponse, PbLookupRespForBucket, PbValue,
        PrefixLookupRequest, PbPrefixLookupReqForBucket, PrefixLookupResponse,
        PbPrefixLookupRespForBucket, PbValueList,
        LimitScanRequest, LimitScanResponse,
        ListOffsetsRequest, ListOffsetsResponse, PbListOffsetsRespForBucket,
        FetchLogRequest, PbFetchLogReqForTable, PbFetchLogReqForBucket, FetchLogResponse,
        PbFetchLogRespForTable, PbFetchLogRespForBucket, PbRemoteLogFetchInfo, PbRemoteLogSegment,
        PbPredicate, PbLeafPredicate, PbCompoundPredicate, PbLiteralValue,
        PbScanReqForBucket, ScanKvRequest, ScanKvResponse,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        // PbPredicate{3: PbCompoundPredicate{2: PbPredicate{...}}}, far deeper than prost's
        // recursion limit.
        let mut data = Vec::new();
        for depth in 0..400 {
            let tag = if depth % 2 == 0 { 0x1a } else { 0x12 };
            data.push(tag);
            data.push(0x7f);
        }
        assert!(PbPredicate::decode(data.as_slice()).is_err());
        assert_eq!(decode_everything(&data), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_bytes_never_panic_and_re_encode_stably(
            data in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            prop_assert_eq!(decode_everything(&data), Ok(()));
        }
    }
}
