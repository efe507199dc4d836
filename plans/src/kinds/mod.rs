//! Target kinds: one module per kind (`sim`, `lambda`, `cloudfront`, `ecs`,
//! `kubernetes`, `fleet`), each the home of everything the plan language
//! knows about that kind. So far: its wire sections, the serde structs of
//! its `targets.NAME.<kind>` section and of the artifact sources it takes,
//! re-exported from [`crate::raw`] where the schema and every caller find
//! them.
//!
//! `image` is the one module that is not a kind: the container image
//! source that `kubernetes` and `ecs` both take, kept once rather than
//! owned by one of them and borrowed by the other.

pub(crate) mod cloudfront;
pub(crate) mod ecs;
pub(crate) mod fleet;
pub(crate) mod image;
pub(crate) mod kubernetes;
pub(crate) mod lambda;
pub(crate) mod sim;
