//! The ctl commands as the client knows them: `tern ctl help` lists them, and a command's
//! leading words may be shortened to any unique prefix (`sh bgp sum` is `show bgp
//! summary`), as on routers' CLIs. What follows the leading words (prefixes, addresses,
//! options) is passed on as typed.

/// A command: its leading keywords, the rest of its usage, and what it does.
pub struct Command {
    pub words: &'static [&'static str],
    pub args: &'static str,
    pub help: &'static str,
}

const fn c(words: &'static [&'static str], args: &'static str, help: &'static str) -> Command {
    Command { words, args, help }
}

pub const COMMANDS: &[Command] = &[
    c(
        &["show", "interfaces"],
        "[NAME]",
        "ports: MAC, MTU, addresses, packets, drops, AF_XDP mode",
    ),
    c(
        &["show", "tunnels"],
        "",
        "tunnels: endpoints, MTU, packets, drops",
    ),
    c(
        &["show", "routes"],
        "[PREFIX [longer]] [source S] [limit N]",
        "the RIB, streamed at any size",
    ),
    c(
        &["show", "route"],
        "ADDRESS|PREFIX",
        "the route a packet to ADDRESS takes, or PREFIX's",
    ),
    c(
        &["show", "fib"],
        "",
        "routes per source, FIB memory, group pool",
    ),
    c(
        &["show", "neighbors"],
        "",
        "ARP/NDP neighbours and their state",
    ),
    c(
        &["show", "counters"],
        "",
        "packets, outcomes and drops by reason, per port",
    ),
    c(
        &["show", "conntrack"],
        "[summary] [proto P] [addr A] [port N] [limit N]",
        "NAT sessions, streamed",
    ),
    c(&["show", "nat"], "", "NAT rules, frontends, backend health"),
    c(&["show", "fpm"], "", "zebra's FPM feed"),
    c(
        &["show", "bgp", "summary"],
        "",
        "BGP peers, state, prefixes received",
    ),
    c(
        &["show", "bgp", "neighbors"],
        "[PEER]",
        "BGP peers in detail",
    ),
    c(
        &["show", "bgp", "routes"],
        "[PREFIX | ipv4|ipv6] [peer P]",
        "the BGP RIB, streamed",
    ),
    c(&["show", "trace"], "", "the traced packets, stage by stage"),
    c(
        &["route", "add"],
        "PREFIX via ADDRESS | dev IFNAME|TUNNEL",
        "a static route",
    ),
    c(&["route", "del"], "PREFIX", "remove a static route"),
    c(
        &["conntrack", "delete"],
        "[proto P] [addr A] [port N]",
        "end NAT sessions",
    ),
    c(
        &["nat", "backend"],
        "FRONTEND ADDR:PORT up|down",
        "take a DNAT backend out or back",
    ),
    c(
        &["nat", "forward", "add"],
        "NAME tcp|udp ADDR:PORT BACKEND..",
        "a DNAT forward",
    ),
    c(&["nat", "forward", "del"], "NAME", "remove a DNAT forward"),
    c(
        &["bgp", "neighbor", "add"],
        "ADDRESS as ASN [OPTIONS]",
        "a BGP peer at runtime",
    ),
    c(&["bgp", "neighbor", "remove"], "PEER", "remove a BGP peer"),
    c(
        &["bgp", "neighbor", "reset"],
        "PEER",
        "restart a BGP session",
    ),
    c(
        &["bgp", "neighbor", "refresh"],
        "PEER",
        "ask a peer to send its routes again",
    ),
    c(
        &["bgp", "mrt", "load"],
        "FILE [peer INDEX] [next-hop ADDR]",
        "seed the BGP RIB from an MRT dump",
    ),
    c(&["bgp", "mrt", "clear"], "", "forget the MRT routes"),
    c(
        &["bgp", "health", "up"],
        "",
        "announce tern's prefixes again",
    ),
    c(&["bgp", "health", "down"], "", "withdraw tern's prefixes"),
    c(
        &["trace", "add"],
        "N [PORT]",
        "trace the next N packets (received on PORT)",
    ),
    c(
        &["trace", "clear"],
        "",
        "forget traced packets, stop tracing",
    ),
    c(
        &["log", "level"],
        "LEVEL",
        "error|warn|info|debug|trace, or a filter: info,bgp_glue=debug",
    ),
    c(
        &["capture"],
        "PORT [rx|tx|both] [--count N] [--seconds S] [--filter EXPR] -w FILE|-",
        "pcap of a port",
    ),
    c(&["help"], "", "this list"),
];

/// `words` with their leading keywords written out: each may be any unique prefix of a
/// keyword a command has there. Words past a command's keywords, and words no keyword
/// starts with, are left as they are (the server says what it does not know).
pub fn expand(words: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        // The keywords commands have here, after the ones already read.
        let mut keywords: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| c.words.len() > i && c.words[..i].iter().zip(&out).all(|(k, o)| k == o))
            .map(|c| c.words[i])
            .collect();
        keywords.sort_unstable();
        keywords.dedup();
        let matching: Vec<&str> = if keywords.contains(&w.as_str()) {
            vec![w.as_str()]
        } else {
            keywords
                .into_iter()
                .filter(|k| k.starts_with(w.as_str()))
                .collect()
        };
        match matching[..] {
            [one] => out.push(one.to_string()),
            [] => {
                out.extend(words[i..].iter().cloned());
                break;
            }
            _ => {
                let typed: Vec<&str> = out.iter().map(String::as_str).chain([w.as_str()]).collect();
                return Err(format!(
                    "{:?} is ambiguous: {}",
                    typed.join(" "),
                    matching.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// `tern ctl help`: every command, aligned.
pub fn help() -> String {
    let usage: Vec<String> = COMMANDS
        .iter()
        .map(|c| {
            let words = c.words.join(" ");
            if c.args.is_empty() {
                words
            } else {
                format!("{words} {}", c.args)
            }
        })
        .collect();
    let width = usage.iter().map(String::len).max().unwrap_or(0);
    let mut out =
        String::from("tern ctl COMMAND [--json]; keywords may be shortened to a unique prefix\n\n");
    for (u, c) in usage.iter().zip(COMMANDS) {
        out += &format!("  {u:<width$}  {}\n", c.help);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn unique_prefixes_expand_and_arguments_stay() {
        for (typed, meant) in [
            ("sh bgp sum", "show bgp summary"),
            ("sh int", "show interfaces"),
            (
                "sh routes 198.18.0.0/15 longer",
                "show routes 198.18.0.0/15 longer",
            ),
            ("sh route 198.18.0.1", "show route 198.18.0.1"),
            ("sh neigh", "show neighbors"),
            ("tr a 5 tern0", "trace add 5 tern0"),
            (
                "ro a 198.51.100.0/24 via 192.0.2.2",
                "route add 198.51.100.0/24 via 192.0.2.2",
            ),
            ("bgp nei res 192.0.2.2", "bgp neighbor reset 192.0.2.2"),
            ("show counters", "show counters"),
            ("sh conn proto tcp", "show conntrack proto tcp"),
            ("frobnicate now", "frobnicate now"),
            ("show bogus", "show bogus"),
        ] {
            assert_eq!(expand(&w(typed)), Ok(w(meant)), "{typed:?}");
        }
    }

    #[test]
    fn an_ambiguous_prefix_names_the_candidates() {
        let e = expand(&w("sh rou")).expect_err("route or routes");
        assert!(e.contains("route, routes"), "{e}");
        let e = expand(&w("c")).expect_err("capture or conntrack");
        assert!(e.contains("capture, conntrack"), "{e}");
        assert_eq!(expand(&w("s")), Ok(w("show")), "show is the only s");
    }

    #[test]
    fn help_lists_every_command() {
        let h = help();
        for c in COMMANDS {
            assert!(h.contains(&c.words.join(" ")), "{}", c.words.join(" "));
        }
    }
}
