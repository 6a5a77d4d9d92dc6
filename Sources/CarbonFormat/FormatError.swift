/// Why bytes are not a valid CarbonStore file: what is wrong, where, and in which section.
///
/// `description` is one line, e.g.
/// `checksum mismatch in section 'transactions' (tag 1) at offset 120: stored 0x1234abcd, computed 0x9f00e1c2`.
public struct FormatError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The file does not start with the CarbonStore magic (not a CarbonStore file, or damaged in transfer).
        case badMagic
        /// The file's format version is not one this reader understands.
        case unsupportedVersion
        /// A flag bit or a critical section that this reader does not understand.
        case unsupportedFeature
        /// The file ends in the middle of a field, or before the last section the header announces.
        case truncated
        /// A length or count that reaches past the end of the file, section or payload.
        case lengthBeyondEnd
        /// A CRC-32C does not match the bytes it covers.
        case checksumMismatch
        /// A compressed section does not inflate to exactly its declared raw length.
        case decompressionFailed
        /// A declared size above the reader's limits.
        case limitExceeded
        /// A section appears twice.
        case duplicateSection
        /// A value the model cannot hold: invalid UTF-8, a bad currency code, an MCC above 9999, ...
        case invalidValue
        /// A structural error inside a section: an overlong varint, an unknown tag, a bad index, ...
        case malformed
        /// Bytes after the end of the last section, or after the end of a section's content.
        case trailingBytes
    }

    public var kind: Kind
    /// Byte offset in the file where the problem was found. Inside a compressed section it is the
    /// offset of the section's payload; `detail` then names the offset inside the inflated bytes.
    public var offset: Int
    /// The tag of the section the problem is in, if any.
    public var sectionTag: UInt16?
    public var detail: String

    public init(_ kind: Kind, offset: Int, sectionTag: UInt16? = nil, detail: String) {
        self.kind = kind
        self.offset = offset
        self.sectionTag = sectionTag
        self.detail = detail
    }

    /// The section's name (`transactions`, ...), `unknown` for tags this version does not know.
    public var sectionName: String? { sectionTag.map(SectionTag.name(of:)) }

    public var description: String {
        var s = Self.phrase(kind)
        if let tag = sectionTag { s += " in section '\(SectionTag.name(of: tag))' (tag \(tag))" }
        s += " at offset \(offset)"
        if !detail.isEmpty { s += ": " + detail }
        return s
    }

    static func phrase(_ kind: Kind) -> String {
        switch kind {
        case .badMagic: return "not a CarbonStore file (bad magic)"
        case .unsupportedVersion: return "unsupported format version"
        case .unsupportedFeature: return "unsupported feature"
        case .truncated: return "file truncated"
        case .lengthBeyondEnd: return "length beyond end"
        case .checksumMismatch: return "checksum mismatch"
        case .decompressionFailed: return "decompression failed"
        case .limitExceeded: return "limit exceeded"
        case .duplicateSection: return "duplicate section"
        case .invalidValue: return "invalid value"
        case .malformed: return "malformed data"
        case .trailingBytes: return "trailing bytes"
        }
    }
}

/// Section tags of format version 1.
public enum SectionTag {
    public static let transactions: UInt16 = 1
    public static let responses: UInt16 = 2
    public static let preferences: UInt16 = 3
    public static let footprints: UInt16 = 4
    public static let savings: UInt16 = 5
    /// Tags with this bit set are critical: a reader that does not know one must refuse the file.
    public static let criticalBit: UInt16 = 0x8000

    /// Whether this version decodes sections with `tag` (rather than preserving them).
    public static func isKnown(_ tag: UInt16) -> Bool { tag >= 1 && tag <= 5 }

    public static func name(of tag: UInt16) -> String {
        switch tag {
        case transactions: return "transactions"
        case responses: return "responses"
        case preferences: return "preferences"
        case footprints: return "footprints"
        case savings: return "savings"
        default: return "unknown"
        }
    }
}

/// A record too large to write: its file, the sum of its sections' payloads, or its number of
/// items would be beyond `RecordCodec.Limits`, so readers with the same limits would refuse it.
public struct RecordTooLargeError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Limit: String, Sendable, Hashable {
        /// `RecordCodec.Limits.maxFileSize`: the encoded file.
        case fileSize
        /// `RecordCodec.Limits.maxDecodedSize`: the sections' payloads before compression.
        case decodedSize
        /// `RecordCodec.Limits.maxItemCount`: rows, dictionary strings, choices, metadata entries.
        case itemCount
    }

    public var userID: String
    public var limit: Limit
    /// Bytes (items for `.itemCount`) the record would take, as `limit` counts them.
    public var size: Int
    /// The limit, in the same unit.
    public var maximum: Int

    public init(userID: String, limit: Limit, size: Int, maximum: Int) {
        self.userID = userID
        self.limit = limit
        self.size = size
        self.maximum = maximum
    }

    /// For example `user alice's record would be 9437184 bytes (file), over the limit of 8388608
    /// bytes (RecordCodec.Limits.maxFileSize); remove old data or raise the limit`.
    public var description: String {
        let (amount, name) =
            switch limit {
            case .fileSize: ("be \(size) bytes (file), over the limit of \(maximum) bytes", "maxFileSize")
            case .decodedSize:
                ("be \(size) bytes (decoded), over the limit of \(maximum) bytes", "maxDecodedSize")
            case .itemCount:
                (
                    "hold \(size) items (rows, dictionary strings, choices, metadata entries), over the limit of \(maximum)",
                    "maxItemCount"
                )
            }
        return
            "user \(userID)'s record would \(amount) (RecordCodec.Limits.\(name)); remove old data or raise the limit for every reader and writer"
    }
}
