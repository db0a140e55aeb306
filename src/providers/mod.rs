//! Providers: one file per chat platform behind one trait.
