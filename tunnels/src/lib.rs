//! IPIP / GRE / 6in4 encapsulation and decapsulation (issue 6). Nothing is implemented yet: the crate exists so the workspace has its fixed shape.
