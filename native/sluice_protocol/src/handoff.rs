//! The fd hand-off message: one `SOCK_SEQPACKET` message per spawn whose payload names the
//! spawn id and the number of fds that travel with it as `SCM_RIGHTS`.
//!
//! The fds are always in the order stdin (write end), stdout (read end), then stderr
//! (read end) when stderr is piped separately.

/// Size of the payload in bytes: the id (u64, little endian) and the fd count (u8).
pub const PAYLOAD_LEN: usize = 9;

/// The most fds one hand-off can carry.
pub const MAX_FDS: usize = 3;

/// A decoded hand-off header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The spawn id chosen by the BEAM.
    pub id: u64,
    /// How many fds accompany the message.
    pub nfds: u8,
}

impl Handoff {
    /// Encodes the payload.
    pub fn encode(&self) -> [u8; PAYLOAD_LEN] {
        let mut out = [0u8; PAYLOAD_LEN];
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8] = self.nfds;
        out
    }

    /// Decodes a payload; `None` when it has the wrong length or too many fds.
    pub fn decode(bytes: &[u8]) -> Option<Handoff> {
        if bytes.len() != PAYLOAD_LEN || bytes[8] as usize > MAX_FDS {
            return None;
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[..8]);
        Some(Handoff {
            id: u64::from_le_bytes(id),
            nfds: bytes[8],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Handoff {
            id: 0x0102_0304_0506_0708,
            nfds: 3,
        };
        assert_eq!(Handoff::decode(&h.encode()), Some(h));
    }

    #[test]
    fn rejects_bad_payloads() {
        assert_eq!(Handoff::decode(&[0u8; 8]), None);
        let mut bytes = Handoff { id: 1, nfds: 3 }.encode();
        bytes[8] = 4;
        assert_eq!(Handoff::decode(&bytes), None);
    }
}
