// Writes the fuzzer's seed corpus (Fuzz/corpus): valid files from RecordGenerator, then truncated
// and damaged copies. Built and run by `scripts/fuzz.sh --make-corpus`; the output is committed.

import CarbonFormat
import CarbonModel

#if canImport(Glibc)
    import Glibc
#endif

@main
struct MakeCorpus {
    static func write(_ bytes: [UInt8], to path: String) {
        guard let f = fopen(path, "wb") else { fatalError("cannot create \(path)") }
        _ = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }

    static func main() {
        let dir = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Fuzz/corpus"
        var valid: [(String, [UInt8])] = []
        // Small random records, every kind of part, awkward strings and extreme values.
        for seed in UInt64(1)...12 {
            let record = RecordGenerator.record(seed: seed, maxItems: 6, preservedSections: seed % 3 == 0)
            let codec =
                seed % 2 == 0
                ? RecordCodec(options: .init(compression: .none))
                : RecordCodec(options: .init(compression: .zlib(level: 6), compressionThreshold: 64))
            valid.append(("valid-record-\(seed)", codec.encodeVersion1(record)))
        }
        // A small workload-shaped user, compressed and not.
        let small = RecordGenerator.workload(
            .init(
                transactions: 60, merchants: 8, mccs: 4, currencies: 2, responses: 5, preferences: 4,
                footprints: 20, savings: 5),
            seed: 3)
        valid.append(("valid-workload-zlib", RecordCodec().encodeVersion1(small)))
        valid.append(
            ("valid-workload-raw", RecordCodec(options: .init(compression: .none)).encodeVersion1(small)))
        // Version 2: snapshots followed by change frames of every kind, and a torn tail.
        var rng = SeededRandom(seed: 42)
        for seed in UInt64(1)...4 {
            var record = RecordGenerator.record(seed: seed + 100, maxItems: 5)
            record.revision = min(record.revision, 1_000)
            let donor = RecordGenerator.record(seed: seed + 200, maxItems: 5)
            let codec = RecordCodec(options: .init(compression: .none))
            var (file, layout) = try! codec.encodeSnapshot(
                record, fileID: WriteID(high: rng.next(), low: rng.next()))
            for step in 0..<3 {
                var next = record
                next.revision += 1
                next.transactions.insert(
                    contentsOf: donor.transactions.prefix(step + 1), at: next.transactions.count / 2)
                if !next.footprints.isEmpty { next.footprints.removeFirst() }
                next.responses.append(contentsOf: donor.responses.prefix(1))
                next.savings = donor.savings.suffix(2) + next.savings
                for (k, v) in donor.preferences { next.preferences[k] = v }
                if let k = record.preferences.keys.first { next.preferences[k] = nil }
                let frame = codec.encodeChange(
                    from: record, to: next, appendingTo: layout,
                    id: WriteID(high: rng.next(), low: rng.next()))!
                file += frame.bytes
                layout = layout.appending(frame)
                record = next
            }
            valid.append(("valid-v2-frames-\(seed)", file))
            if seed == 1 { valid.append(("valid-v2-torn-tail", Array(file.dropLast(7)))) }
        }
        // Version 3: sections compressed with zstd, then a change frame.
        let zstd = RecordCodec(options: .init(compression: .zstd(level: 1), compressionThreshold: 64))
        let (v3, v3Layout) = try! zstd.encodeSnapshot(small, fileID: WriteID(high: rng.next(), low: rng.next()))
        precondition(v3[8] == 3, "the zstd seed is not version 3")
        valid.append(("valid-v3-zstd", v3))
        var changed = small
        changed.revision += 1
        changed.transactions.removeFirst(3)
        let v3Frame = zstd.encodeChange(
            from: small, to: changed, appendingTo: v3Layout, id: WriteID(high: rng.next(), low: rng.next()))!
        valid.append(("valid-v3-zstd-frame", v3 + v3Frame.bytes))
        for (name, bytes) in valid {
            precondition((try? RecordCodec().decode(bytes)) != nil, "\(name) does not decode")
            write(bytes, to: "\(dir)/\(name).cstore")
        }
        // Damaged: truncated at a few points, one flipped byte, a header only.
        let base = valid[0].1
        write(Array(base.prefix(base.count / 2)), to: "\(dir)/damaged-truncated-half.cstore")
        write(Array(base.prefix(47)), to: "\(dir)/damaged-truncated-header.cstore")
        var flipped = valid[2].1
        flipped[flipped.count / 2] ^= 0x40
        write(flipped, to: "\(dir)/damaged-flipped-byte.cstore")
        write(Array(valid[4].1.dropLast(1)), to: "\(dir)/damaged-truncated-last-byte.cstore")
        write(valid[5].1 + [0], to: "\(dir)/damaged-trailing-byte.cstore")
    }
}
