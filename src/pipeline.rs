//! Pipeline: the stages composed for one config snapshot.
