import CarbonModel
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Writes each log record as one JSON object on one line:
/// `{"time", "level", "message", "label"?, ...metadata}`, metadata values as strings. Lines go to
/// standard output whole, one write each, so that lines of concurrent requests never interleave.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let write: @Sendable ([UInt8]) -> Void

    public init(
        label: String, level: Logger.Level = .info,
        write: @escaping @Sendable ([UInt8]) -> Void = Self.standardOutput
    ) {
        self.label = label
        self.logLevel = level
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("time", Timestamp.now().iso8601), ("level", event.level.rawValue),
            ("message", event.message.description),
        ]
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for key in merged.keys.sorted() where !["time", "level", "message"].contains(key) {
            fields.append((key, Self.flatten(merged[key]!)))
        }
        var line: [UInt8] = [UInt8(ascii: "{")]
        for (i, (k, v)) in fields.enumerated() {
            if i > 0 { line.append(UInt8(ascii: ",")) }
            Self.appendString(k, to: &line)
            line.append(UInt8(ascii: ":"))
            Self.appendString(v, to: &line)
        }
        line.append(contentsOf: Array("}\n".utf8))
        write(line)
    }

    static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): return s
        case .stringConvertible(let c): return c.description
        case .array(let a): return "[" + a.map(flatten).joined(separator: ", ") + "]"
        case .dictionary(let d):
            return "{" + d.keys.sorted().map { "\($0): \(flatten(d[$0]!))" }.joined(separator: ", ") + "}"
        }
    }

    /// Appends `s` as a JSON string: quotes, backslashes and control characters escaped, so that no
    /// value (an error that quotes a user id, say) can break a line or forge a field.
    static func appendString(_ s: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out.append(contentsOf: [0x5C, 0x22])
            case "\\": out.append(contentsOf: [0x5C, 0x5C])
            case "\n": out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case "\r": out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case "\t": out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case "\u{2028}", "\u{2029}":
                // Valid in JSON, but line breaks to some readers.
                let v = scalar.value
                out.append(contentsOf: [
                    0x5C, UInt8(ascii: "u"), hex[Int(v >> 12)], hex[Int(v >> 8 & 15)], hex[Int(v >> 4 & 15)],
                    hex[Int(v & 15)],
                ])
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let v = scalar.value
                    out.append(contentsOf: [
                        0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(v >> 4)], hex[Int(v & 15)],
                    ])
                } else {
                    out.append(contentsOf: String(scalar).utf8)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let outputLock = Mutex(())

    public static let standardOutput: @Sendable ([UInt8]) -> Void = { line in
        outputLock.withLock { _ in
            line.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Glibc.write(1, buffer.baseAddress! + offset, buffer.count - offset)
                    if n <= 0 { break }
                    offset += n
                }
            }
        }
    }
}
