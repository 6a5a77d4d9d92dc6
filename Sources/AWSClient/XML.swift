/// A small XML reader for the documents S3 and STS answer with: elements, text, entities and
/// CDATA. Attributes, comments, processing instructions and doctype are skipped.
///
/// The reader works on untrusted bytes (any proxy or fake endpoint may answer), so it is bounded:
/// documents larger than `XMLLimits.maxBytes` or nested deeper than `XMLLimits.maxDepth` are
/// refused with an `XMLError` before they can exhaust memory or the stack.
public struct XMLElement: Sendable, Hashable {
    public var name: String
    public var text: String
    public var children: [XMLElement]

    /// The first child with this (local) name.
    public func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    public func all(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }
    /// The text of the first child with this name.
    public subscript(_ name: String) -> String? { child(name)?.text }

    /// The code and message of an AWS XML error document (`<Error>`, or `<ErrorResponse>` /
    /// `<Response>` wrapping `<Errors><Error>` as the query protocols answer).
    public static func awsError(_ bytes: [UInt8]) -> (code: String, message: String)? {
        guard let root = parse(bytes) else { return nil }
        let error: XMLElement?
        switch root.name {
        case "Error": error = root
        case "ErrorResponse", "Response": error = root.child("Errors")?.child("Error") ?? root.child("Error")
        default: error = nil
        }
        guard let error, let code = error["Code"] else { return nil }
        return (code, error["Message"] ?? "")
    }

    /// For an error answer that `awsError` could not read: why, when the body is XML beyond the
    /// limits, else its first 200 characters with credential material redacted.
    public static func unreadableErrorBody(_ bytes: [UInt8]) -> String {
        do {
            _ = try read(bytes)
        } catch let e as XMLError where e.reason != .malformed {
            return "the error answer could not be read: \(e)"
        } catch {}
        return SecretRedaction.excerpt(bytes)
    }

    /// Parses a document and returns its root element; nil if it is not well-formed enough or
    /// exceeds the limits (`read` says which).
    public static func parse(_ bytes: [UInt8]) -> XMLElement? {
        try? read(bytes)
    }

    /// Parses a document and returns its root element, or says why it was refused: too large,
    /// nested too deeply, or not well-formed.
    public static func read(_ bytes: [UInt8]) throws(XMLError) -> XMLElement {
        guard bytes.count <= XMLLimits.maxBytes else {
            throw XMLError(reason: .tooLarge(bytes: bytes.count))
        }
        var p = XMLParserState(b: bytes)
        if let root = p.document() { return root }
        throw XMLError(reason: p.tooDeep ? .tooDeep : .malformed)
    }
}

/// The bounds of `XMLElement.read`. AWS documents are far inside them: a ListObjectsV2 page of
/// 1,000 keys of 1,024 bytes is under 1.5 MB, and S3 and STS nest at most 5 levels.
public enum XMLLimits {
    /// The largest document read, in bytes (4 MiB).
    public static let maxBytes = 4 << 20
    /// The deepest element nesting read; the root element is depth 1.
    public static let maxDepth = 64
}

/// An XML document that `XMLElement.read` refused.
public struct XMLError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: Sendable, Hashable {
        /// Larger than `XMLLimits.maxBytes`.
        case tooLarge(bytes: Int)
        /// Elements nested deeper than `XMLLimits.maxDepth`.
        case tooDeep
        /// Not well-formed enough to read (unclosed element, no root element, ...).
        case malformed
    }

    public var reason: Reason

    public init(reason: Reason) { self.reason = reason }

    public var description: String {
        switch reason {
        case .tooLarge(let bytes):
            return "XML document refused: \(bytes) bytes, more than the limit of \(XMLLimits.maxBytes)"
        case .tooDeep:
            return "XML document refused: elements nested deeper than the limit of \(XMLLimits.maxDepth)"
        case .malformed:
            return "not a well-formed XML document"
        }
    }
}

private struct XMLParserState {
    let b: [UInt8]
    var i = 0
    /// Set when an element lay deeper than `XMLLimits.maxDepth`; parsing then stops.
    var tooDeep = false

    init(b: [UInt8]) { self.b = b }

    mutating func document() -> XMLElement? {
        while i < b.count {
            skipSpace()
            guard i < b.count, b[i] == 0x3C else { return nil }
            if starts("<?") {
                skip(past: "?>")
            } else if starts("<!--") {
                skip(past: "-->")
            } else if starts("<!") {
                skip(past: ">")
            } else {
                return element(depth: 1)
            }
        }
        return nil
    }

    /// Reads one element at `depth` (the root is 1). Recursion is bounded by `XMLLimits.maxDepth`.
    mutating func element(depth: Int) -> XMLElement? {
        guard depth <= XMLLimits.maxDepth else {
            tooDeep = true
            return nil
        }
        guard i < b.count, b[i] == 0x3C else { return nil }
        i += 1
        let name = readName()
        // Skip attributes.
        var selfClosing = false
        while i < b.count, b[i] != 0x3E {
            if b[i] == 0x2F { selfClosing = true }
            if b[i] == 0x22 || b[i] == 0x27 {
                let q = b[i]
                i += 1
                while i < b.count, b[i] != q { i += 1 }
            } else {
                selfClosing = selfClosing && b[i] == 0x2F
            }
            i += 1
        }
        guard i < b.count else { return nil }
        i += 1
        var node = XMLElement(name: localName(name), text: "", children: [])
        if selfClosing { return node }
        var text: [UInt8] = []
        while i < b.count {
            if b[i] == 0x3C {
                if starts("</") {
                    skip(past: ">")
                    node.text = String(decoding: decodeEntities(text), as: UTF8.self)
                    return node
                } else if starts("<![CDATA[") {
                    i += 9
                    while i < b.count, !starts("]]>") {
                        text.append(b[i])
                        i += 1
                    }
                    i += 3
                    continue
                } else if starts("<!--") {
                    skip(past: "-->")
                    continue
                } else if starts("<?") {
                    skip(past: "?>")
                    continue
                }
                guard let child = element(depth: depth + 1) else { return nil }
                node.children.append(child)
            } else {
                text.append(b[i])
                i += 1
            }
        }
        return nil
    }

    mutating func readName() -> String {
        let start = i
        while i < b.count, ![0x20, 0x09, 0x0A, 0x0D, 0x3E, 0x2F].contains(b[i]) { i += 1 }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    func localName(_ name: String) -> String {
        guard let colon = name.lastIndex(of: ":") else { return name }
        return String(name[name.index(after: colon)...])
    }

    func starts(_ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard i + n <= b.count else { return false }
        return s.withUTF8Buffer { buf in
            for k in 0..<n where b[i + k] != buf[k] { return false }
            return true
        }
    }

    mutating func skip(past s: StaticString) {
        while i < b.count, !starts(s) { i += 1 }
        i = min(b.count, i + s.utf8CodeUnitCount)
    }

    mutating func skipSpace() {
        while i < b.count, [0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains(b[i]) { i += 1 }
    }

    func decodeEntities(_ t: [UInt8]) -> [UInt8] {
        guard t.contains(0x26) else { return t }
        var out: [UInt8] = []
        var k = 0
        while k < t.count {
            if t[k] == 0x26, let semi = t[k...].firstIndex(of: 0x3B), semi - k <= 10 {
                let ent = String(decoding: t[(k + 1)..<semi], as: UTF8.self)
                var scalar: UInt32?
                switch ent {
                case "amp": scalar = 0x26
                case "lt": scalar = 0x3C
                case "gt": scalar = 0x3E
                case "quot": scalar = 0x22
                case "apos": scalar = 0x27
                default:
                    if ent.hasPrefix("#x") {
                        scalar = UInt32(ent.dropFirst(2), radix: 16)
                    } else if ent.hasPrefix("#") {
                        scalar = UInt32(ent.dropFirst())
                    }
                }
                if let scalar, let u = Unicode.Scalar(scalar) {
                    out += Array(String(Character(u)).utf8)
                    k = semi + 1
                    continue
                }
            }
            out.append(t[k])
            k += 1
        }
        return out
    }
}
