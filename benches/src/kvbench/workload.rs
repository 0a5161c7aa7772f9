//! What each request is: GET or SET, which key, which value, from a seeded PRNG.
//!
//! Keys are `k` (`c` for the INCR workload) followed by the key index in decimal, zero-padded
//! to the key size, so every key has exactly `key_bytes` bytes and the keyspace is exactly
//! `keyspace` keys. Requests are
//! encoded straight into RESP bytes; nothing per request is allocated beyond the output buffer.

use bytes::{BufMut, BytesMut};

use super::options::WriteKind;

/// A request kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
}

/// splitmix64: tiny, fast and good enough to pick keys; seeded per connection.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float uniform in [0, 1).
    pub fn next_fraction(&mut self) -> f64 {
        // 53 random bits: exactly representable, strictly below 1.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One connection's request generator.
#[derive(Clone, Debug)]
pub struct Workload {
    rng: Rng,
    keyspace: u64,
    key_bytes: usize,
    read_fraction: f64,
    value: Vec<u8>,
    write: WriteKind,
}

impl Workload {
    /// # Panics
    /// If `key_bytes` cannot hold every index of the keyspace (options validate this first).
    pub fn new(
        seed: u64,
        keyspace: u64,
        key_bytes: usize,
        value_bytes: usize,
        read_fraction: f64,
    ) -> Workload {
        assert!(
            key_bytes >= super::options::key_bytes_min(keyspace),
            "key_bytes {key_bytes} too small for keyspace {keyspace}"
        );
        // A recognisable, non-constant value; its content does not matter to the server.
        let value = (0..value_bytes).map(|i| b'a' + (i % 26) as u8).collect();
        Workload {
            rng: Rng::new(seed),
            keyspace,
            key_bytes,
            read_fraction,
            value,
            write: WriteKind::Set,
        }
    }

    /// Makes every write `write` instead of a plain SET.
    pub fn with_write(mut self, write: WriteKind) -> Workload {
        self.write = write;
        self
    }

    /// Frames (and so replies) one request of `op` takes: a MULTI/INCR/EXEC write is three.
    pub fn frames_per(&self, op: Op) -> usize {
        match (op, self.write) {
            (Op::Set, WriteKind::IncrMulti) => 3,
            _ => 1,
        }
    }

    /// Picks the next request and appends its RESP encoding to `out`.
    pub fn next_request(&mut self, out: &mut BytesMut) -> Op {
        let (op, index) = self.next_choice();
        self.encode_resp(op, index, out);
        op
    }

    /// Picks the next request: its kind and a key index uniform in the keyspace.
    pub fn next_choice(&mut self) -> (Op, u64) {
        let op = if self.read_fraction > 0.0 && self.rng.next_fraction() < self.read_fraction {
            Op::Get
        } else {
            Op::Set
        };
        (op, self.rng.next_u64() % self.keyspace)
    }

    /// Appends the RESP encoding of `op` on key `index` to `out`.
    ///
    /// # Panics
    /// If `index` is outside the keyspace.
    pub fn encode_resp(&self, op: Op, index: u64, out: &mut BytesMut) {
        match op {
            Op::Get => {
                out.put_slice(b"*2\r\n$3\r\nGET\r\n");
                self.put_key(index, out);
            }
            Op::Set if self.write == WriteKind::IncrMulti => {
                out.put_slice(b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n");
                self.put_key(index, out);
                out.put_slice(b"*1\r\n$4\r\nEXEC\r\n");
            }
            Op::Set => {
                let with_ttl = self.write == WriteKind::SetEx;
                out.put_slice(if with_ttl { b"*5\r\n" } else { b"*3\r\n" });
                out.put_slice(b"$3\r\nSET\r\n");
                self.put_key(index, out);
                put_bulk_header(self.value.len(), out);
                out.put_slice(&self.value);
                out.put_slice(b"\r\n");
                if with_ttl {
                    out.put_slice(b"$2\r\nEX\r\n$4\r\n3600\r\n");
                }
            }
        }
    }

    /// The key of `index`: `k` (`c` for counters) and the index zero-padded to `key_bytes`.
    ///
    /// # Panics
    /// If `index` is outside the keyspace.
    pub fn key(&self, index: u64) -> Vec<u8> {
        assert!(
            index < self.keyspace,
            "key index {index} outside the keyspace {}",
            self.keyspace
        );
        let digits = self.key_bytes - 1;
        // Counters get keys of their own: INCR of a SET workload's value is an error.
        let prefix = if self.write == WriteKind::IncrMulti {
            'c'
        } else {
            'k'
        };
        format!("{prefix}{index:0digits$}").into_bytes()
    }

    /// The value every SET writes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    fn put_key(&self, index: u64, out: &mut BytesMut) {
        put_bulk_header(self.key_bytes, out);
        out.put_slice(&self.key(index));
        out.put_slice(b"\r\n");
    }
}

fn put_bulk_header(len: usize, out: &mut BytesMut) {
    out.put_slice(format!("${len}\r\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use kvnode::resp::{decode_request, Frame, Limits};

    use super::*;

    fn decode_all(mut buf: BytesMut) -> Vec<Vec<Vec<u8>>> {
        let mut requests = Vec::new();
        while let Some(frame) = decode_request(&mut buf, &Limits::default()).expect("valid RESP") {
            let Frame::Array(items) = frame else {
                panic!("not an array: {frame:?}")
            };
            requests.push(
                items
                    .into_iter()
                    .map(|item| match item {
                        Frame::Bulk(bytes) => bytes.to_vec(),
                        other => panic!("not a bulk: {other:?}"),
                    })
                    .collect(),
            );
        }
        requests
    }

    #[test]
    fn writes_with_a_ttl_and_in_a_transaction_encode_as_redis_commands() {
        let mut out = BytesMut::new();
        let set_ex = Workload::new(1, 10, 2, 3, 0.0).with_write(WriteKind::SetEx);
        set_ex.encode_resp(Op::Set, 7, &mut out);
        assert_eq!(
            decode_all(out.split()),
            vec![vec![
                b"SET".to_vec(),
                b"k7".to_vec(),
                b"abc".to_vec(),
                b"EX".to_vec(),
                b"3600".to_vec()
            ]]
        );
        let incr = Workload::new(1, 10, 2, 3, 0.0).with_write(WriteKind::IncrMulti);
        incr.encode_resp(Op::Set, 3, &mut out);
        assert_eq!(incr.frames_per(Op::Set), 3);
        assert_eq!(incr.frames_per(Op::Get), 1);
        assert_eq!(
            decode_all(out.split()),
            vec![
                vec![b"MULTI".to_vec()],
                vec![b"INCR".to_vec(), b"c3".to_vec()],
                vec![b"EXEC".to_vec()]
            ]
        );
    }

    #[test]
    fn requests_are_valid_resp_with_exact_key_and_value_sizes() {
        let mut workload = Workload::new(3, 100_000, 16, 128, 0.5);
        let mut buf = BytesMut::new();
        let ops: Vec<Op> = (0..200).map(|_| workload.next_request(&mut buf)).collect();
        let requests = decode_all(buf);
        assert_eq!(requests.len(), 200);
        for (op, request) in ops.iter().zip(&requests) {
            assert_eq!(request[1].len(), 16);
            assert_eq!(request[1][0], b'k');
            let index: u64 = std::str::from_utf8(&request[1][1..])
                .expect("digits")
                .parse()
                .expect("number");
            assert!(index < 100_000);
            match op {
                Op::Get => assert_eq!((request[0].as_slice(), request.len()), (&b"GET"[..], 2)),
                Op::Set => {
                    assert_eq!((request[0].as_slice(), request.len()), (&b"SET"[..], 3));
                    assert_eq!(request[2].len(), 128);
                }
            }
        }
        let reads = ops.iter().filter(|op| **op == Op::Get).count();
        assert!(
            (60..=140).contains(&reads),
            "about half should be reads, got {reads}"
        );
    }

    #[test]
    fn read_fraction_zero_and_one_are_exact() {
        let mut buf = BytesMut::new();
        let mut writes = Workload::new(1, 10, 2, 1, 0.0);
        assert!((0..100).all(|_| writes.next_request(&mut buf) == Op::Set));
        let mut reads = Workload::new(1, 10, 2, 1, 1.0);
        assert!((0..100).all(|_| reads.next_request(&mut buf) == Op::Get));
    }

    #[test]
    fn resp_encoding_and_raw_key_value_agree() {
        let mut workload = Workload::new(5, 1000, 8, 10, 0.5);
        for _ in 0..50 {
            let (op, index) = workload.next_choice();
            let mut buf = BytesMut::new();
            workload.encode_resp(op, index, &mut buf);
            let request = decode_all(buf).pop().expect("one request");
            assert_eq!(request[1], workload.key(index));
            assert_eq!(workload.key(index).len(), 8);
            if op == Op::Set {
                assert_eq!(request[2], workload.value());
            }
        }
        assert_eq!(workload.key(7), b"k0000007");
        assert_eq!(workload.key(999), b"k0000999");
    }

    #[test]
    #[should_panic(expected = "outside the keyspace")]
    fn key_outside_the_keyspace_panics() {
        Workload::new(1, 10, 4, 1, 0.0).key(10);
    }

    #[test]
    fn same_seed_same_requests() {
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        let mut first = Workload::new(9, 1000, 8, 4, 0.3);
        let mut second = Workload::new(9, 1000, 8, 4, 0.3);
        for _ in 0..50 {
            first.next_request(&mut a);
            second.next_request(&mut b);
        }
        assert_eq!(a, b);
    }
}
