/// A small XML reader for the documents S3 and STS answer with: elements, text, entities and
/// CDATA. Attributes, comments, processing instructions and doctype are skipped.
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

    /// Parses a document and returns its root element; nil if it is not well-formed enough.
    public static func parse(_ bytes: [UInt8]) -> XMLElement? {
        var p = XMLParserState(b: bytes)
        return p.document()
    }
}

private struct XMLParserState {
    let b: [UInt8]
    var i = 0

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
                return element()
            }
        }
        return nil
    }

    mutating func element() -> XMLElement? {
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
                guard let child = element() else { return nil }
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
