import BenchmarkSupport
import CarbonFormat
import CarbonModel
import CarbonStore
import Foundation

// A loop of one codec operation on W1 (or W2), for a profiler: package-benchmark's runs are too
// short and mix in the benchmark tool. Run from the Benchmarks folder:
//
//     swift build -c release --product CodecProfile
//     perf record -g -- .build/release/CodecProfile encode 2000      # or: decode, w2-encode, w2-decode
//     perf report --no-children
//
// It prints the mean time per operation. `sizes` prints the W1 and W2 file sizes with each
// compression instead; `long-keys N L` times the encode and decode of N transactions whose metadata
// name two keys of L bytes.

let args = CommandLine.arguments
if args.count > 1, args[1] == "sizes" {
    for (name, r) in [("W1", Fixtures.w1), ("W2", Fixtures.w2)] {
        for (label, c) in [
            ("zstd level 1 (default)", RecordCodec.Compression.zstd(level: 1)),
            ("zlib level 1", .zlib(level: 1)),
            ("zlib level 6", .zlib(level: 6)), ("none", .none),
        ] {
            let bytes = try RecordCodec(options: .init(compression: c)).encodeSnapshot(r, fileID: .random())
                .bytes
            print("\(name) \(label): \(bytes.count) bytes, format version \(bytes[8])")
        }
    }
    exit(0)
}
if args.count > 1, args[1] == "catch-up" || args[1] == "frames" {
    // What a process that shares a user with others does with their change frames. `catch-up`:
    // applies the 7 frames that 7 other processes appended since this one's cached record (each
    // inserts one transaction at its own place among the others, as MultiProcessUpdate's workers
    // do) to that record. `frames`: decodes the file whole after 140 such frames (a whole read).
    let iterations = args.count > 2 ? Int(args[2]) ?? 1000 : 1000
    let codec = RecordCodec()
    var (bytes, layout) = try codec.encodeSnapshot(Fixtures.w1, fileID: .random())
    var record = try codec.decodeFile(bytes).record
    // This process's own update first: its cached record is then cut in chunks, with filters, as
    // a process holds it after an update.
    func append(_ t: Transaction) throws {
        var next = record
        try next.upsert(t)
        next.revision += 1
        guard let frame = codec.encodeChange(from: record, to: next, appendingTo: layout, id: .random())
        else {
            fatalError("no frame for \(t.id)")
        }
        bytes += frame.bytes
        layout = layout.appending(frame)
        record = next
    }
    try append(Fixtures.appended(9_000_000, label: "own"))
    let cachedRecord = record
    let cachedLayout = layout
    let frameCount = args[1] == "catch-up" ? 7 : 140
    for k in 0..<frameCount { try append(Fixtures.appended((k % 7) * 1_000_000 + k / 7, label: "p\(k % 7)")) }
    let tail = Array(bytes[cachedLayout.validLength...])
    var sink = 0
    let start = ContinuousClock.now
    for _ in 0..<iterations {
        if args[1] == "catch-up" {
            sink &+= try tail.withUnsafeBytes {
                try codec.applyAppended($0, to: cachedRecord, layout: cachedLayout).record.transactions.count
            }
        } else {
            sink &+= try codec.decodeFile(bytes).record.transactions.count
        }
    }
    let elapsed = ContinuousClock.now - start
    print(
        "\(args[1]) (\(frameCount) frames): \(elapsed / iterations) per operation over \(iterations) (\(sink))"
    )
    exit(0)
}
/// A `path:` store (locking=local) in a fresh folder `name` of the benchmarks' data, holding the
/// W1 user "w1", for the update loops below.
func w1Store(
    _ name: String, written: ByteCounter = ByteCounter(), configure: (inout StoreOptions) -> Void = { _ in }
) async throws -> Store {
    let store = try await Fixtures.makeStore(
        dir: try Fixtures.makeDirectory(name), written: written, configure: configure)
    _ = try await Fixtures.seed(store, "w1", with: Fixtures.w1)
    return store
}

if args.count > 1, args[1] == "append8" {
    // 8 concurrent updates of one W1 user per round, as the "8 concurrent tasks" benchmark makes
    // them: the lock holds (batches) per round, and the time of a round.
    let rounds = args.count > 2 ? Int(args[2]) ?? 100 : 100
    let holds = ByteCounter()
    let store = try await w1Store("profile-append8") { $0.events.lockAcquired = { _, _ in holds.add(1) } }
    let before = holds.value
    let elapsed = try await Task.detached {
        let start = ContinuousClock.now
        for r in 0..<rounds {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for k in 0..<8 {
                    group.addTask {
                        try await store.update("w1") { try $0.upsert(Fixtures.appended(r * 8 + k)) }
                    }
                }
                try await group.waitForAll()
            }
        }
        return ContinuousClock.now - start
    }.value
    print(
        "append8: \(elapsed / rounds) per round of 8; \(Double(holds.value - before) / Double(rounds)) lock holds per round"
    )
    Fixtures.removeDirectory("profile-append8")
    exit(0)
}
if args.count > 1, args[1] == "append-tasks" {
    // W1 append updates one after another, each in a task of its own started from a dispatch
    // queue and waited for with a semaphore, as package-benchmark runs an async benchmark's
    // iterations: every update has another leader than the last.
    let iterations = args.count > 2 ? Int(args[2]) ?? 1000 : 1000
    let store = try await w1Store("profile-append-tasks")
    let processorStart = ProcessUsage.now().processorTime
    // The main thread waits, as package-benchmark's does; the tasks run on the pool.
    let start = ContinuousClock.now
    for n in 0..<iterations {
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global(qos: .userInitiated).async {
            Task {
                do { try await store.update("w1") { try $0.upsert(Fixtures.appended(n)) } } catch {
                    fatalError("update \(n): \(error)")
                }
                done.signal()
            }
        }
        done.wait()
    }
    let elapsed = ContinuousClock.now - start
    let processor = ProcessUsage.now().processorTime - processorStart
    print(
        "append-tasks: \(elapsed / iterations) per update over \(iterations); processor time \(processor / iterations)"
    )
    Fixtures.removeDirectory("profile-append-tasks")
    exit(0)
}
if args.count > 1, args[1] == "append" {
    // W1 append updates in a loop on a `path:` store (locking=local), as the W1 append benchmark
    // runs them: what one update costs, for a profiler.
    let iterations = args.count > 2 ? Int(args[2]) ?? 1000 : 1000
    let written = ByteCounter()
    let store = try await w1Store("profile-append", written: written)
    let reserve = { (store.storage as? PathStorage)?.reservedByteCount ?? 0 }
    let (writtenBefore, reservedBefore) = (written.value, reserve())
    // The processor time the process spent (user and system, every thread) around the loop.
    let processorStart = ProcessUsage.now().processorTime
    // Off the main actor, as package-benchmark runs its benchmarks: no hop to the main thread
    // and back around every update.
    let elapsed = try await Task.detached {
        let start = ContinuousClock.now
        for n in 0..<iterations {
            try await store.update("w1") { try $0.upsert(Fixtures.appended(n)) }
        }
        return ContinuousClock.now - start
    }.value
    let processor = ProcessUsage.now().processorTime - processorStart
    // Bytes written: frames and the snapshots of compactions (the store's count), and the zeros
    // of the reserve (the storage's).
    let frames = Double(written.value - writtenBefore) / Double(iterations)
    let zeros = Double(reserve() - reservedBefore) / Double(iterations)
    print(
        "append: \(elapsed / iterations) per update over \(iterations); processor time \(processor / iterations); bytes written per update \(Int(frames + zeros)) (frames and snapshots \(Int(frames)), reserve \(Int(zeros)))"
    )
    Fixtures.removeDirectory("profile-append")
    exit(0)
}
if args.count > 1, args[1] == "long-keys" {
    // N transactions whose metadata name the same two keys of L bytes, equal but for their last
    // byte: the encode and the decode of one such file. Each should cost about what the keys' bytes
    // cost once, plus what the rows cost, not N times the keys' length.
    let n = args.count > 2 ? Int(args[2]) ?? 1000 : 1000
    let length = args.count > 3 ? Int(args[3]) ?? 100_000 : 100_000
    let stem = String(repeating: "k", count: length - 1)
    var record = UserRecord(userID: "long-keys", createdAt: Timestamp(millisecondsSince1970: 0))
    for i in 0..<n {
        var t = Fixtures.appended(i)
        t.metadata = [stem + "a": "1", stem + "b": "2"]
        try record.upsert(t)
    }
    let codec = RecordCodec()
    let t0 = ContinuousClock.now
    let file = try codec.encodeSnapshot(record, fileID: .random()).bytes
    let t1 = ContinuousClock.now
    let decoded = try codec.decodeFile(file).record
    let t2 = ContinuousClock.now
    let t3 = try codec.encodeSnapshot(decoded, fileID: .random()).bytes.count
    let t4 = ContinuousClock.now
    print(
        "long-keys \(n) x \(length) bytes: file \(file.count) bytes; encode \(t1 - t0); decode \(t2 - t1); encode of the decoded record \(t4 - t2) (\(t3) bytes)"
    )
    exit(0)
}
let what = args.count > 1 ? args[1] : "encode"
let iterations = args.count > 2 ? Int(args[2]) ?? 1000 : 1000
let record = what.hasPrefix("w2") ? Fixtures.w2 : Fixtures.w1
let codec = RecordCodec()
let bytes = try codec.encodeSnapshot(record, fileID: .random()).bytes
var sink = 0
let start = ContinuousClock.now
for _ in 0..<iterations {
    if what.hasSuffix("encode") {
        sink &+= try codec.encodeSnapshot(record, fileID: .random()).bytes.count
    } else {
        sink &+= try codec.decodeFile(bytes).record.transactions.count
    }
}
let elapsed = ContinuousClock.now - start
print("\(what): \(elapsed / iterations) per operation over \(iterations) (\(sink))")
