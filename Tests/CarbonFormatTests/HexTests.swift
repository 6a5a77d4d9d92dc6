import Testing

@testable import CarbonFormat

/// The hex text of ids and integers, which versions and operation ids are made of: the same
/// digits as the plain definitions below, and parsing that refuses anything but 32 lower-case
/// digits.
@Suite struct HexTests {
    /// The definition: two lower-case digits per stored byte, in stored order.
    static func reference(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined()
    }

    @Test func idsPrintTheirStoredBytesAndParseBack() {
        var rng = SystemRandomNumberGenerator()
        let edges = [
            WriteID(high: 0, low: 0), WriteID(high: .max, low: .max), WriteID(high: 1, low: 0),
            WriteID(high: 0, low: 1), WriteID(high: 0x0102_0304_0506_0708, low: 0x090a_0b0c_0d0e_0f10),
        ]
        for id in edges + (0..<500).map({ _ in WriteID(high: rng.next(), low: rng.next()) }) {
            #expect(id.description == Self.reference(id.bytes))
            #expect(WriteID(hex: id.description) == id)
            #expect(WriteID(hexDigits: Array(id.description.utf8)) == id)
            #expect(WriteID(bytes: id.bytes) == id)
        }
        // Stored order: `low` first, little-endian.
        #expect(
            WriteID(high: 0x1f1e_1d1c_1b1a_1918, low: 0x0f0e_0d0c_0b0a_0908).description
                == "08090a0b0c0d0e0f18191a1b1c1d1e1f")
    }

    @Test func idParsingRefusesAnythingButThirtyTwoLowerCaseDigits() {
        let good = "000102030405060708090a0b0c0d0e0f"
        #expect(WriteID(hex: good) != nil)
        for bad in [
            "", String(good.dropLast()), good + "0", good.uppercased(), "g" + good.dropFirst(),
            String(good.dropLast()) + ":", String(good.dropLast()) + " ", " " + good.dropFirst(),
            String(good.dropLast(2)) + "é",  // 32 bytes of UTF-8, one of them not a digit
            String(repeating: "/", count: 32), String(repeating: "`", count: 32),
            String(repeating: ":", count: 32), String(repeating: "@", count: 32),
        ] {
            #expect(WriteID(hex: bad) == nil, "\(bad)")
        }
    }

    @Test func integersPrintEveryDigitMostSignificantFirst() {
        var rng = SystemRandomNumberGenerator()
        func padded(_ s: String, _ width: Int) -> String {
            String(repeating: "0", count: width - s.count) + s
        }
        for v in [0, 1, 0xF, 0x10, UInt64.max] + (0..<200).map({ _ in rng.next() as UInt64 }) {
            #expect(hexString(v) == padded(String(v, radix: 16), 16))
            #expect(
                hexString(UInt32(truncatingIfNeeded: v))
                    == padded(String(UInt32(truncatingIfNeeded: v), radix: 16), 8))
            #expect(
                hexString(UInt16(truncatingIfNeeded: v))
                    == padded(String(UInt16(truncatingIfNeeded: v), radix: 16), 4))
            #expect(
                hexString(UInt8(truncatingIfNeeded: v))
                    == padded(String(UInt8(truncatingIfNeeded: v), radix: 16), 2))
        }
    }
}
