//! Connection tracking and SNAT/DNAT (issue 5). Nothing is implemented yet: the crate exists so the workspace has its fixed shape.
