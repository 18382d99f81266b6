//! pcap helpers for tests: write what a memory port sent, read frames to inject.

use std::path::Path;

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

pub fn write(path: &Path, frames: &[Vec<u8>]) -> Result<(), pcap_file::PcapError> {
    let file = std::fs::File::create(path).map_err(pcap_file::PcapError::IoError)?;
    let mut w = PcapWriter::new(file)?;
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            std::time::Duration::from_micros(i as u64),
            f.len() as u32,
            f,
        ))?;
    }
    Ok(())
}

pub fn read(path: &Path) -> Result<Vec<Vec<u8>>, pcap_file::PcapError> {
    let mut r = PcapReader::new(std::fs::File::open(path).map_err(pcap_file::PcapError::IoError)?)?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p?.data.into_owned());
    }
    Ok(out)
}
