//! BGP sessions and route deltas for the FIB (issue 8). Nothing is implemented yet: the crate exists so the workspace has its fixed shape.
