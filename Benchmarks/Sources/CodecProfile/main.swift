import BenchmarkSupport
import CarbonFormat
import CarbonModel
import Foundation

// A loop of one codec operation on W1 (or W2), for a profiler: package-benchmark's runs are too
// short and mix in the benchmark tool. Run from the Benchmarks folder:
//
//     swift build -c release --product CodecProfile
//     perf record -g -- .build/release/CodecProfile encode 2000      # or: decode, w2-encode, w2-decode
//     perf report --no-children
//
// It prints the mean time per operation. `sizes` prints the W1 and W2 file sizes with each
// compression instead.

let args = CommandLine.arguments
if args.count > 1, args[1] == "sizes" {
    for (name, r) in [("W1", Fixtures.w1), ("W2", Fixtures.w2)] {
        for (label, c) in [
            ("zstd level 1 (default)", RecordCodec.Compression.zstd(level: 1)), ("zlib level 1", .zlib(level: 1)),
            ("zlib level 6", .zlib(level: 6)), ("none", .none),
        ] {
            let bytes = try RecordCodec(options: .init(compression: c)).encodeSnapshot(r, fileID: .random()).bytes
            print("\(name) \(label): \(bytes.count) bytes, format version \(bytes[8])")
        }
    }
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
