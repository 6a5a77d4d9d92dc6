import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

/// Adversarial probes of the codec's fast paths: the inline varint against the old reading, the
/// ASCII path of strict UTF-8 decoding, the dictionary's representation cache, and round trips of
/// generated records through snapshots and change frames.
@Suite struct CodecFastPathAdversaryTests {
    struct Outcome: Equatable, CustomStringConvertible {
        var value: UInt64?
        var kind: FormatError.Kind?
        var offset: Int?
        var detail: String?
        var pos: Int
        var description: String {
            "value \(value.map(String.init) ?? "-") \(kind.map { "\($0)" } ?? "") @\(offset ?? -1) pos \(pos) \(detail ?? "")"
        }
    }

    /// The varint as the format reads it, written from the format's rules alone (the old slow
    /// path): at most 10 bytes, no overlong encoding, no bit past 64; errors at the varint's start.
    static func reference(_ bytes: [UInt8], from start: Int, end: Int, fileOffset: Int) -> Outcome {
        var pos = start
        var result: UInt64 = 0
        var shift: UInt64 = 0
        func fail(_ kind: FormatError.Kind, _ detail: String) -> Outcome {
            Outcome(value: nil, kind: kind, offset: fileOffset + start, detail: detail, pos: pos)
        }
        while true {
            guard pos < end else { return fail(.truncated, "v runs past the end") }
            let b = bytes[pos]
            pos += 1
            if shift == 63, b > 1 { return fail(.malformed, "v overflows 64 bits") }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 {
                if b == 0, shift > 0 { return fail(.malformed, "v has an overlong encoding") }
                return Outcome(value: result, pos: pos)
            }
            shift += 7
        }
    }

    /// Reads one varint at `start` of `bytes[..<end]` (a reader over that slice alone, so that
    /// bytes after `end` in memory must not be read).
    static func fast(_ bytes: [UInt8], from start: Int, end: Int, fileOffset: Int) -> Outcome {
        bytes.withUnsafeBytes { all in
            let slice = UnsafeRawBufferPointer(rebasing: all[..<end])
            var r = ByteReader(slice, context: ReaderContext(fileOffset: fileOffset))
            r.pos = start
            do throws(FormatError) {
                let v = try r.varint("v")
                return Outcome(value: v, pos: r.pos)
            } catch {
                return Outcome(
                    value: nil, kind: error.kind, offset: error.offset, detail: error.detail, pos: r.pos)
            }
        }
    }

    /// Every shape of varint (1 to 11 bytes, last byte 0, 1, 2, 0x7F or random, every continuation
    /// byte 0x80 or random, cut at every place, at a nonzero position of the reader, with bytes
    /// after the reader's end that would complete it): the same value, position and error as the
    /// old reading.
    @Test func inlineVarintMatchesTheOldReadingOnEveryShape() {
        var rng = SeededRandom(seed: 2024)
        var cases = 0
        for length in 1...11 {
            for last: UInt8 in [0, 1, 2, 0x7F, 0x40] {
                for variant in 0..<12 {
                    var body = (0..<(length - 1)).map { _ in
                        variant == 0 ? UInt8(0x80) : variant == 1 ? 0xFF : UInt8(0x80 | rng.int(0...127))
                    }
                    body.append(variant == 2 ? UInt8(rng.int(0...127)) : last)
                    let lead = [UInt8](repeating: 0x81, count: variant % 3)
                    let bytes = lead + body + [0x05, 0x80, 0x01]
                    for end in lead.count...(lead.count + body.count) {
                        for end2 in [end, bytes.count] where end2 >= lead.count {
                            let want = Self.reference(bytes, from: lead.count, end: end2, fileOffset: 1000)
                            let got = Self.fast(bytes, from: lead.count, end: end2, fileOffset: 1000)
                            #expect(got == want, "\(bytes) from \(lead.count) to \(end2): \(got) vs \(want)")
                            cases += 1
                        }
                    }
                }
            }
        }
        // Random bytes, mostly continuation bytes.
        for _ in 0..<20_000 {
            let n = rng.int(0...12)
            let bytes = (0..<n).map { _ in
                rng.chance(0.8) ? UInt8(rng.int(0x80...0xFF)) : UInt8(rng.int(0...0x7F))
            }
            let end = rng.int(0...n)
            let want = Self.reference(bytes, from: 0, end: end, fileOffset: 0)
            #expect(Self.fast(bytes, from: 0, end: end, fileOffset: 0) == want, "\(bytes) to \(end)")
        }
        #expect(cases > 1000)
    }

    /// Strict UTF-8 after ASCII runs of every length around the eight-byte step: each invalid
    /// sequence is refused, each valid one kept byte for byte, as `String(validating:)` decides.
    @Test func invalidUTF8AfterASCIIRunsIsRefused() {
        let tails: [[UInt8]] = [
            [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xFE], [0xE2, 0x82], [0xC3],
            [0xF0, 0x9F, 0x98], [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80],
            [0xEF, 0xBF, 0xBD], [0x00], [0x7F],
        ]
        for run in 0...17 {
            for tail in tails {
                for after in [0, 1, 8] {
                    let ascii = (0..<run).map { UInt8(0x41 + $0 % 26) }
                    let bytes = ascii + tail + [UInt8](repeating: 0x61, count: after)
                    let want = String(validating: bytes, as: UTF8.self)
                    let got = bytes.withUnsafeBufferPointer { decodeUTF8($0) }
                    #expect(got.map { Array($0.utf8) } == want.map { Array($0.utf8) }, "\(bytes)")
                    // High bit set in each position of an eight-byte word.
                }
            }
        }
        for width in 1...24 {
            for k in 0..<width {
                var bytes = [UInt8](repeating: 0x20, count: width)
                bytes[k] = 0x80
                #expect(bytes.withUnsafeBufferPointer { decodeUTF8($0) } == nil, "\(width) at \(k)")
                #expect(!bytes.withUnsafeBytes { isASCII($0.baseAddress!, width) }, "\(width) at \(k)")
            }
        }
    }

    /// The dictionary's representation cache under churn: many strings of one length whose
    /// storages are made and dropped (so that addresses are reused), small strings, the empty
    /// string, the same storage again, and strings equal by bytes in other storages. Each gets
    /// the index of its bytes.
    @Test func representationCacheKeepsIndicesByBytesUnderChurn() {
        var rng = SeededRandom(seed: 5)
        var table = StringTable(capacity: 2)
        var known: [[UInt8]: Int] = [:]
        var order: [[UInt8]] = []
        func check(_ s: String, _ context: String) {
            let bytes = Array(s.utf8)
            let id = table.id(s)
            if let k = known[bytes] {
                #expect(id == k, "\(context): \(s)")
            } else {
                #expect(id == order.count, "\(context): \(s) new")
                known[bytes] = order.count
                order.append(bytes)
            }
        }
        let kept = (0..<50).map {
            String(decoding: Array("kept string number \($0 + 100)".utf8), as: UTF8.self)
        }
        for step in 0..<20_000 {
            switch rng.int(0...5) {
            case 0:
                // A fresh storage, dropped right after: the next one may take its address.
                let s = String(
                    decoding: Array("churned string number \(rng.int(100...999))".utf8), as: UTF8.self)
                check(s, "step \(step) churn")
            case 1: check(rng.pick(kept), "step \(step) kept")
            case 2: check("s\(rng.int(0...99))", "step \(step) small")
            case 3: check("", "step \(step) empty")
            case 4:
                var s = String(decoding: Array("grown string \(rng.int(0...20))".utf8), as: UTF8.self)
                check(s, "step \(step) before append")
                s.append("x")
                check(s, "step \(step) after append")
            default:
                let s = String(repeating: "\u{E9}", count: rng.int(0...40))
                check(s, "step \(step) non-ASCII")
            }
        }
        #expect(table.strings.map { Array($0.utf8) } == order)
    }

    static func change(_ record: UserRecord, donor: UserRecord, rng: inout SeededRandom) -> UserRecord {
        var r = record
        r.revision += 1
        for _ in 0..<rng.int(1...5) {
            switch rng.int(0...6) {
            case 0 where !donor.transactions.isEmpty:
                var t = rng.pick(Array(donor.transactions))
                t.id += "-\(rng.int(0...1_000_000))"
                try? r.upsert(t)
            case 1 where !r.transactions.isEmpty:
                r.transactions.remove(at: rng.int(0...(r.transactions.count - 1)))
            case 2 where !r.transactions.isEmpty:
                let i = rng.int(0...(r.transactions.count - 1))
                r.transactions[i].merchant = rng.chance(0.5) ? nil : "M\u{E9}rchant \(rng.int(0...9))"
                r.transactions[i].amount = Money(
                    minorUnits: Int64(rng.int(-1_000_000...1_000_000)), currency: CurrencyCode("XXX")!)
            case 3 where !donor.footprints.isEmpty:
                var f = rng.pick(Array(donor.footprints))
                f.id += "-\(rng.int(0...1_000_000))"
                r.footprints.append(f)
            case 4 where !r.footprints.isEmpty:
                r.footprints.remove(at: rng.int(0...(r.footprints.count - 1)))
            case 5 where !r.transactions.isEmpty:
                let i = rng.int(0...(r.transactions.count - 1))
                r.transactions[i].metadata.updateValue("v\(rng.int(0...3))", forKey: "k\(rng.int(0...3))")
            default:
                r.preferences.updateValue(
                    Preference(value: "p\(rng.int(0...5))", updatedAt: Timestamp(millisecondsSince1970: 7)),
                    forKey: "pref\(rng.int(0...3))")
            }
        }
        return r
    }

    /// Generated records through a snapshot and through chains of change frames decode to the
    /// very record written.
    @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
    func generatedRecordsRoundTripThroughSnapshotsAndFrames(seed: UInt64) throws {
        let codec = RecordCodec()
        var rng = SeededRandom(seed: seed)
        var record = RecordGenerator.record(seed: seed, maxItems: 200)
        let donor = RecordGenerator.record(seed: seed + 100, maxItems: 200)
        let (snapshot, firstLayout) = try codec.encodeSnapshot(record, fileID: .random())
        let decoded = try codec.decodeFile(snapshot)
        #expect(decoded.record == record)
        var file = snapshot
        var layout = firstLayout
        for k in 0..<25 {
            let next = Self.change(record, donor: donor, rng: &rng)
            guard let frame = codec.encodeChange(from: record, to: next, appendingTo: layout, id: .random())
            else {
                Issue.record("seed \(seed) frame \(k): no frame")
                return
            }
            file += frame.bytes
            layout = layout.appending(frame)
            record = next
            let again = try codec.decodeFile(file)
            #expect(again.record == record, "seed \(seed) after frame \(k)")
        }
        // And the record as decoded (sharing its dictionary's strings) through a snapshot again.
        let last = try codec.decodeFile(file).record
        let (bytes2, _) = try codec.encodeSnapshot(last, fileID: .random())
        #expect(try codec.decodeFile(bytes2).record == record)
    }
}
