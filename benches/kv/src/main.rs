//! Small artifacts through ASL and three embedded key-value stores, in one
//! process and one run: puts committed in batches, then every artifact read
//! back once in random order. Reported: puts/s, gets/s, bytes on disk, and
//! gets/s as a ratio to redb (a read transaction per get, and all gets
//! through one read transaction: `redb-1tx`) and to ASL with compression
//! off.
//!
//! A crate of its own so that the library never depends on its peers:
//!   cd benches/kv && cargo run --release -- [--count N] [--size BYTES]
//!     [--engines asl,asl-raw,redb,redb-1tx,fjall,cacache] [--work DIR] [--batch N]
//!     [--keep]   (leaves each engine's files in DIR to look at)
//! Keys are the artifacts' BLAKE3 ids for every engine (cacache keys its
//! content by its own integrity hash); values are text-like and compress
//! about 3-4x, as source and logs do.

use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    count: usize,
    size: usize,
    engines: Vec<String>,
    work: PathBuf,
    batch: usize,
    seed: u64,
    keep: bool,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        count: 200_000,
        size: 1024,
        engines: "asl,asl-raw,redb,redb-1tx,fjall,cacache"
            .split(',')
            .map(String::from)
            .collect(),
        work: PathBuf::from("kv-bench-work"),
        batch: 10_000,
        seed: 1,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--count" => a.count = value()?.parse()?,
            "--size" => a.size = value()?.parse()?,
            "--engines" => a.engines = value()?.split(',').map(String::from).collect(),
            "--work" => a.work = value()?.into(),
            "--batch" => a.batch = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "--keep" => a.keep = true,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// xorshift64*: the same values on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const WORDS: &[&str] = &[
    "fn",
    "let",
    "mut",
    "self",
    "return",
    "match",
    "if",
    "else",
    "for",
    "while",
    "struct",
    "impl",
    "pub",
    "use",
    "error",
    "result",
    "value",
    "index",
    "buffer",
    "segment",
    "block",
    "length",
    "offset",
    "commit",
    "reader",
    "writer",
    "config",
    "request",
    "response",
    "timestamp",
    "status",
    "level",
    "info",
    "debug",
    "warn",
    "user",
    "session",
    "bytes",
    "count",
    "total",
    "path",
    "file",
    "open",
    "close",
    "read",
    "write",
    "sync",
    "hash",
];

fn text(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 24);
    while v.len() < n {
        let r = rng.next();
        match r % 16 {
            0 => v.extend_from_slice(b"\n    "),
            1 => v.extend_from_slice((r >> 40).to_string().as_bytes()),
            2 => v.extend_from_slice(b"();"),
            _ => v.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()].as_bytes()),
        }
        v.push(b' ');
    }
    v.truncate(n);
    v
}

/// One engine under test: put a batch, make it durable, get by key.
trait Engine {
    fn put_batch(&mut self, items: &[(blake3::Hash, Vec<u8>)]) -> Res<()>;
    /// Called once between the puts and the gets.
    fn start_reads(&mut self) -> Res<()> {
        Ok(())
    }
    fn get(&self, key: &blake3::Hash) -> Res<usize>;
}

struct Asl(asl::Store);

impl Engine for Asl {
    fn put_batch(&mut self, items: &[(blake3::Hash, Vec<u8>)]) -> Res<()> {
        for (_, v) in items {
            self.0.put(v)?;
        }
        Ok(self.0.commit()?)
    }
    fn get(&self, key: &blake3::Hash) -> Res<usize> {
        Ok(self.0.get(&asl::ArtifactId::from_bytes(*key.as_bytes()))?.len())
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("artifacts");

struct Redb(redb::Database);

impl Engine for Redb {
    fn put_batch(&mut self, items: &[(blake3::Hash, Vec<u8>)]) -> Res<()> {
        let tx = self.0.begin_write()?;
        {
            let mut t = tx.open_table(TABLE)?;
            for (k, v) in items {
                t.insert(k.as_bytes().as_slice(), v.as_slice())?;
            }
        }
        Ok(tx.commit()?)
    }
    fn get(&self, key: &blake3::Hash) -> Res<usize> {
        let tx = self.0.begin_read()?;
        let t = tx.open_table(TABLE)?;
        let v = t.get(key.as_bytes().as_slice())?.ok_or("missing")?;
        Ok(v.value().len())
    }
}

/// redb with every get through one read transaction opened before them:
/// its fastest read path, and the fairer peer for a store whose reads
/// need no transaction.
struct Redb1Tx(Redb, Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>);

impl Engine for Redb1Tx {
    fn put_batch(&mut self, items: &[(blake3::Hash, Vec<u8>)]) -> Res<()> {
        self.0.put_batch(items)
    }
    fn start_reads(&mut self) -> Res<()> {
        self.1 = Some(self.0 .0.begin_read()?.open_table(TABLE)?);
        Ok(())
    }
    fn get(&self, key: &blake3::Hash) -> Res<usize> {
        let t = self.1.as_ref().ok_or("start_reads was not called")?;
        let v = t.get(key.as_bytes().as_slice())?.ok_or("missing")?;
        Ok(v.value().len())
    }
}

struct Fjall(fjall::Keyspace, fjall::PartitionHandle);

impl Engine for Fjall {
    fn put_batch(&mut self, items: &[(blake3::Hash, Vec<u8>)]) -> Res<()> {
        let mut b = self.0.batch();
        for (k, v) in items {
            b.insert(&self.1, k.as_bytes().as_slice(), v.as_slice());
        }
        b.commit()?;
        Ok(self.0.persist(fjall::PersistMode::SyncAll)?)
    }
    fn get(&self, key: &blake3::Hash) -> Res<usize> {
        Ok(self.1.get(key.as_bytes())?.ok_or("missing")?.len())
    }
}

struct Cacache(PathBuf, std::collections::HashMap<[u8; 32], cacache::Integrity>);

impl Engine for Cacache {
    fn put_batch(&mut self, items: &[(blake3::Hash, Vec<u8>)]) -> Res<()> {
        for (k, v) in items {
            let sri = cacache::write_hash_sync(&self.0, v)?;
            self.1.insert(*k.as_bytes(), sri);
        }
        Ok(())
    }
    fn get(&self, key: &blake3::Hash) -> Res<usize> {
        let sri = self.1.get(key.as_bytes()).ok_or("missing")?;
        Ok(cacache::read_hash_sync(&self.0, sri)?.len())
    }
}

fn open(engine: &str, dir: &Path) -> Res<Box<dyn Engine>> {
    std::fs::create_dir_all(dir)?;
    Ok(match engine {
        "asl" => Box::new(Asl(asl::StoreOptions::new().create(true).open(dir)?)),
        "asl-raw" => Box::new(Asl(asl::StoreOptions::new()
            .create(true)
            .compression(None)
            .open(dir)?)),
        // Large artifacts in fixed chunk blocks of their own (no chunk sharing).
        "asl-fixed" => Box::new(Asl(asl::StoreOptions::new()
            .create(true)
            .chunk_dedup(false)
            .open(dir)?)),
        "redb" => Box::new(Redb(redb::Database::create(dir.join("db.redb"))?)),
        "redb-1tx" => Box::new(Redb1Tx(Redb(redb::Database::create(dir.join("db.redb"))?), None)),
        "fjall" => {
            let ks = fjall::Config::new(dir).open()?;
            let p = ks.open_partition("artifacts", fjall::PartitionCreateOptions::default())?;
            Box::new(Fjall(ks, p))
        }
        "cacache" => Box::new(Cacache(dir.to_path_buf(), Default::default())),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&e.path()),
                // Allocated blocks, not apparent length: preallocated files
                // would otherwise look larger than they are.
                Ok(m) => total += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                Err(_) => {}
            }
        }
    }
    total
}

struct Row {
    engine: String,
    puts_s: f64,
    gets_s: f64,
    bytes: u64,
}

fn main() -> Res<()> {
    let a = parse_args()?;
    let mut rng = Rng(a.seed.max(1));
    let items: Vec<(blake3::Hash, Vec<u8>)> = (0..a.count)
        .map(|_| {
            let v = text(&mut rng, a.size);
            (blake3::hash(&v), v)
        })
        .collect();
    let logical: u64 = items.iter().map(|(_, v)| v.len() as u64).sum();
    let mut order: Vec<usize> = (0..items.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let mut rows = Vec::new();
    for engine in &a.engines {
        let dir = a.work.join(engine);
        let _ = std::fs::remove_dir_all(&dir);
        let mut e = open(engine, &dir)?;
        let t = Instant::now();
        for batch in items.chunks(a.batch.max(1)) {
            e.put_batch(batch)?;
        }
        let puts_s = items.len() as f64 / t.elapsed().as_secs_f64();
        e.start_reads()?;
        let t = Instant::now();
        for &i in &order {
            let (k, v) = &items[i];
            let n = e.get(k)?;
            if n != v.len() {
                return Err(format!("{engine}: wrong length for item {i}").into());
            }
        }
        let gets_s = items.len() as f64 / t.elapsed().as_secs_f64();
        drop(e);
        rows.push(Row {
            engine: engine.clone(),
            puts_s,
            gets_s,
            bytes: disk_bytes(&dir),
        });
        if !a.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let of = |name: &str| rows.iter().find(|r| r.engine == name).map(|r| r.gets_s);
    println!(
        "{} artifacts of {} B ({} MB logical), batches of {}, random-order gets",
        a.count,
        a.size,
        logical / 1_000_000,
        a.batch
    );
    println!(
        "{:<8} {:>10} {:>10} {:>12} {:>8} {:>9} {:>9} {:>9}",
        "engine", "puts/s", "gets/s", "disk bytes", "space", "vs redb", "vs 1tx", "vs raw"
    );
    for r in &rows {
        let ratio = |base: Option<f64>| base.map(|b| format!("{:.2}", r.gets_s / b)).unwrap_or("-".into());
        println!(
            "{:<8} {:>10.0} {:>10.0} {:>12} {:>8.3} {:>9} {:>9} {:>9}",
            r.engine,
            r.puts_s,
            r.gets_s,
            r.bytes,
            r.bytes as f64 / logical as f64,
            ratio(of("redb")),
            ratio(of("redb-1tx")),
            ratio(of("asl-raw")),
        );
    }
    Ok(())
}
