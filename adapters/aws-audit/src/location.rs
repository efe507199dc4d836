//! The trail's object names under an `s3://bucket/prefix`
//! ([`S3Location`], shared with the other things deployctl keeps in S3).
//!
//! Object names follow [`deployctl_audit::sink`]: one
//! `records-<first>-<last>.jsonl` per batch and one `checkpoint-<seq>.json`
//! per checkpoint, numbers zero-padded to 20 digits so that key order is
//! `seq` order and a listing reads back in the order it was written.

pub use deployctl_aws::s3_location::{InvalidS3Location, S3Location};

/// The audit trail's objects in a location.
pub trait TrailKeys {
    fn records_key(&self, first: u64, last: u64) -> String;
    fn checkpoint_key(&self, seq: u64) -> String;
    /// Whether `key` is one of the trail's objects directly under the prefix.
    fn is_trail_object(&self, key: &str) -> bool;
}

impl TrailKeys for S3Location {
    fn records_key(&self, first: u64, last: u64) -> String {
        self.key(&format!("records-{first:020}-{last:020}.jsonl"))
    }

    fn checkpoint_key(&self, seq: u64) -> String {
        self.key(&format!("checkpoint-{seq:020}.json"))
    }

    fn is_trail_object(&self, key: &str) -> bool {
        let Some(name) = key.strip_prefix(&self.list_prefix()) else {
            return false;
        };
        !name.contains('/')
            && ((name.starts_with("records-") && name.ends_with(".jsonl"))
                || (name.starts_with("checkpoint-") && name.ends_with(".json")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trail_object_names_sort_in_seq_order() {
        let location: S3Location = "s3://audit-bucket/deployctl/prod/".parse().unwrap();
        assert_eq!(
            location.records_key(1, 12),
            "deployctl/prod/records-00000000000000000001-00000000000000000012.jsonl"
        );
        assert_eq!(
            location.checkpoint_key(12),
            "deployctl/prod/checkpoint-00000000000000000012.json"
        );
        let bare: S3Location = "s3://audit-bucket".parse().unwrap();
        assert_eq!(
            bare.checkpoint_key(3),
            "checkpoint-00000000000000000003.json"
        );
    }

    #[test]
    fn trail_objects_are_recognised_only_directly_under_the_prefix() {
        let location: S3Location = "s3://b-1/p".parse().unwrap();
        assert!(location.is_trail_object(&location.records_key(1, 2)));
        assert!(location.is_trail_object(&location.checkpoint_key(2)));
        assert!(!location.is_trail_object("p/sub/checkpoint-1.json"));
        assert!(!location.is_trail_object("other/records-1-2.jsonl"));
        assert!(!location.is_trail_object("p/notes.txt"));
    }
}
