//! Probing which arches the host runs natively.
