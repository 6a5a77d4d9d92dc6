import Foundation

/// Removes credential material from text that goes into an error or a log: answers of credential
/// endpoints (ECS, instance metadata, STS), error bodies of S3 and DynamoDB, configuration values.
///
/// Two rules, applied in order:
/// - **By name.** The value of any field whose name contains `secret`, `token`, `password`,
///   `passwd`, `credential`, `signature`, `private_key`, `access_key`, `api_key`, `session_key` or
///   `authorization` (any case, `_` or `-` optional) becomes `<redacted>`: JSON members
///   (`"SecretAccessKey": "…"`), XML elements (`<SessionToken>…`), `key=value` and `key: value`
///   pairs (INI files, forms, query strings, headers; `Bearer`/`Basic`/`AWS4-HMAC-SHA256` schemes
///   included), and the password of a URL (`https://user:…@host`). A value cut off by the end of the
///   text (a truncated document) is redacted to the end.
/// - **By shape** (`bySecretShape`, for text from outside): AWS access key ids (`AKIA…`, `ASIA…`),
///   and runs of 20 or more base64 / base64url characters that mix upper case, lower case and
///   digits, as secret keys, session tokens and JWTs do. Request ids, UUIDs, ARNs and names do not
///   have that shape.
///
/// Redact before shortening: a value cut in the middle is still recognised by its name only while
/// the name is in the text.
public enum SecretRedaction {
    /// What a redacted value is replaced with.
    public static let marker = "<redacted>"

    /// The text with credential values removed (both rules when `bySecretShape`).
    public static func redact(_ text: String, bySecretShape: Bool = true) -> String {
        var s = text
        s = replaceGroup(in: s, pattern: jsonString, group: 1)
        s = replaceGroup(in: s, pattern: jsonScalar, group: 1)
        s = replaceGroup(in: s, pattern: xmlElement, group: 1)
        s = replaceGroup(in: s, pattern: pair, group: 1)
        s = replaceGroup(in: s, pattern: urlPassword, group: 1)
        if bySecretShape {
            s = replaceGroup(in: s, pattern: accessKeyID, group: 0)
            s = replaceGroup(in: s, pattern: randomLooking, group: 0) { candidate in
                candidate.contains(where: \.isUppercase) && candidate.contains(where: \.isLowercase)
                    && candidate.contains(where: \.isNumber)
            }
        }
        return s
    }

    /// Up to `limit` characters of a body received from outside, on one line, redacted: for
    /// quoting an answer in an error message.
    public static func excerpt(_ body: [UInt8], limit: Int = 200) -> String {
        // Redact a window well beyond the limit, so that names before the cut are seen.
        let window = String(decoding: body.prefix(max(4096, limit * 4)), as: UTF8.self)
        return oneLine(redact(window), limit: limit)
    }

    /// Field names whose values are secret. Letters, digits, `_ . -` around one of the words.
    static let name =
        #"[A-Za-z0-9_.\-]*(?i:secret|token|passw(?:or)?d|credential|signature|private[_\-]?key|access[_\-]?key|api[_\-]?key|session[_\-]?key|authorization)[A-Za-z0-9_.\-]*"#

    /// `"name" : "value"`, the value possibly unterminated.
    static let jsonString = #""\#(name)"\s*:\s*"((?:[^"\\]|\\.)*(?:\\)?)"#
    /// `"name" : 123` / `true` (not objects or arrays: their members are handled one by one).
    static let jsonScalar = #""\#(name)"\s*:\s*([^\s"{\[,}\]][^\s,}\]]*)"#
    /// `<name attrs>value` up to the next tag or the end.
    static let xmlElement = #"<(?:[A-Za-z0-9_\-]+:)?\#(name)(?:\s[^>]*)?>([^<]*)"#
    /// `name=value`, `name: value`, quoted or not, after an optional authorization scheme.
    static let pair =
        #"\#(name)["']?\s*[=:]\s*((?:(?:Bearer|Basic|AWS4-HMAC-SHA256)\s+)?(?:"[^"]*"?|'[^']*'?|[^\s&,;"'<>]+))"#
    /// The password in `scheme://user:password@host`.
    static let urlPassword = #"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:([^\s@]+)@"#
    /// AWS access key ids.
    static let accessKeyID = #"(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|APKA|AIPA)[A-Z0-9]{12,}"#
    /// Long runs of base64 / base64url characters.
    static let randomLooking = #"[A-Za-z0-9+/_\-]{20,}={0,2}"#

    /// Replaces capture `group` of every match with the marker, when non-blank and `accept` agrees.
    static func replaceGroup(
        in text: String, pattern: String, group: Int, accept: (Substring) -> Bool = { _ in true }
    ) -> String {
        guard let regex = try? Regex(pattern) else { return text }
        var out = ""
        var last = text.startIndex
        for match in text.matches(of: regex) {
            guard group < match.output.count, let range = match.output[group].range else { continue }
            let value = text[range]
            let unquoted = value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            guard !value.allSatisfy(\.isWhitespace), unquoted != marker, accept(value) else {
                continue
            }
            guard range.lowerBound >= last else { continue }
            out += text[last..<range.lowerBound]
            out += marker
            last = range.upperBound
        }
        out += text[last...]
        return out
    }
}
