import CZlib
import CarbonModel

@testable import CarbonFormat

/// Files crafted to make a decoder spend memory or time far beyond their size (issue 7, item 5).
/// Each has valid checksums, so it reaches the payload parsers. They are committed to
/// Tests/CarbonFormatTests/FuzzRegressions (`HostileInputTests.writeCorpus` rewrites them).
enum HostileInputs {
    struct Input {
        var name: String
        var bytes: [UInt8]
        /// What a reader with the default limits must say.
        var kind: FormatError.Kind
        var sectionTag: UInt16
        /// A phrase the error's description must contain.
        var phrase: String
    }

    /// Inflated size of the zlib bombs: a 231 kB stream of zeros inflates to about this much.
    static let bombSize = 238_000_000

    /// A zlib stream of `prefix` then zeros, `total` bytes in all, compressed in chunks so the
    /// inflated bytes never exist in memory here either.
    static func deflatedZeros(prefix: [UInt8], total: Int) -> [UInt8] {
        var stream = z_stream()
        precondition(deflateInit_(&stream, 9, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK)
        defer { deflateEnd(&stream) }
        var out: [UInt8] = []
        var output = [UInt8](repeating: 0, count: 64 << 10)
        func feed(_ bytes: [UInt8], finish: Bool) {
            var input = bytes
            input.withUnsafeMutableBufferPointer { inBuf in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = uInt(inBuf.count)
                while true {
                    let status = output.withUnsafeMutableBufferPointer { outBuf -> Int32 in
                        stream.next_out = outBuf.baseAddress
                        stream.avail_out = uInt(outBuf.count)
                        let status = deflate(&stream, finish ? Z_FINISH : Z_NO_FLUSH)
                        out.append(contentsOf: outBuf[0..<(outBuf.count - Int(stream.avail_out))])
                        return status
                    }
                    precondition(status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR)
                    if finish ? status == Z_STREAM_END : stream.avail_in == 0 && stream.avail_out != 0 {
                        break
                    }
                }
            }
        }
        feed(prefix, finish: false)
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var left = total - prefix.count
        while left > 0 {
            let n = min(left, zeros.count)
            feed(n == zeros.count ? zeros : Array(zeros[0..<n]), finish: false)
            left -= n
        }
        feed([], finish: true)
        return out
    }

    /// A one-section file whose section is compressed: `prefix`, then zeros up to `total` bytes.
    static func zlibFile(tag: UInt16, prefix: [UInt8], total: Int) -> [UInt8] {
        let stream = deflatedZeros(prefix: prefix, total: total)
        return Craft.file([Craft.section(tag: tag, flags: 1, body: Craft.le32(UInt32(total)) + stream)])
    }

    /// A one-section file with an uncompressed payload: `prefix`, then zeros up to `total` bytes.
    static func rawFile(tag: UInt16, prefix: [UInt8], total: Int) -> [UInt8] {
        Craft.file([
            Craft.section(tag: tag, body: prefix + [UInt8](repeating: 0, count: total - prefix.count))
        ])
    }

    static var all: [Input] {
        let count = Craft.varint(UInt64(bombSize - 16))
        // A transaction row with a one-entry dictionary, up to its metadata count.
        let row =
            Craft.varint(1) + Craft.varint(2) + Craft.string("EUR") + Craft.string("k") + Craft.string("t")
            + [0, 0, 0, 0, 0, 0, 0, 0]
        // One response, up to its answer kind: count 1, question "q", time delta 0.
        let question = Craft.varint(1) + Craft.string("q") + [0]
        return [
            // The file of the issue: 231 kB that inflate to a transaction count of 238 million.
            Input(
                name: "hostile-zlib-transaction-count",
                bytes: zlibFile(tag: 1, prefix: count, total: bombSize),
                kind: .limitExceeded, sectionTag: 1, phrase: "maxDecodedSize"),
            // The same with a huge dictionary, a valid text answer of 238 MB, a huge choice list,
            // and a huge metadata map ("deep dictionary") for one transaction.
            Input(
                name: "hostile-zlib-dictionary-size",
                bytes: zlibFile(tag: 4, prefix: [0] + count, total: bombSize),
                kind: .limitExceeded, sectionTag: 4, phrase: "maxDecodedSize"),
            Input(
                name: "hostile-zlib-huge-string",
                bytes: zlibFile(
                    tag: 2, prefix: question + [0] + Craft.varint(UInt64(bombSize - 9)), total: bombSize),
                kind: .limitExceeded, sectionTag: 2, phrase: "maxDecodedSize"),
            Input(
                name: "hostile-zlib-choice-count",
                bytes: zlibFile(tag: 2, prefix: question + [3] + count, total: bombSize),
                kind: .limitExceeded, sectionTag: 2, phrase: "maxDecodedSize"),
            Input(
                name: "hostile-zlib-metadata-count",
                bytes: zlibFile(tag: 1, prefix: row + Craft.varint(100_000_000), total: bombSize),
                kind: .limitExceeded, sectionTag: 1, phrase: "maxDecodedSize"),
            // Within the decoded-size limit, but inflating 1,000 times: refused before inflating.
            Input(
                name: "hostile-zlib-ratio",
                bytes: zlibFile(tag: 1, prefix: Craft.varint(1_500_000), total: 15 << 20),
                kind: .limitExceeded, sectionTag: 1, phrase: "maxCompressionRatio"),
            // Uncompressed, small: counts that fit the bytes left but not the smallest encoding of
            // that many items, and a metadata map with more keys than the dictionary has strings.
            Input(
                name: "hostile-transaction-count-above-minimum-size",
                bytes: rawFile(tag: 1, prefix: Craft.varint(60_000), total: 64 << 10),
                kind: .lengthBeyondEnd, sectionTag: 1, phrase: "needs at least"),
            Input(
                name: "hostile-metadata-count-above-dictionary",
                bytes: rawFile(tag: 1, prefix: row + Craft.varint(30_000), total: 64 << 10),
                kind: .malformed, sectionTag: 1, phrase: "more than the 2 strings"),
            // Within the byte limits, more items than a record may hold: 250,001 empty strings.
            Input(
                name: "hostile-dictionary-above-item-limit",
                bytes: rawFile(tag: 4, prefix: [0] + Craft.varint(250_001), total: 250_005),
                kind: .limitExceeded, sectionTag: 4, phrase: "maxItemCount"),
        ]
    }
}
