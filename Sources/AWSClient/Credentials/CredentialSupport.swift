import AWSSigning
import Foundation

/// A variable's value, trimmed; nil when unset or blank (the SDKs treat empty as unset).
func environmentValue(_ environment: [String: String], _ name: String) -> String? {
    guard let raw = environment[name] else { return nil }
    let value = raw.trimmingCharacters(in: .whitespacesAndNewlines)
    return value.isEmpty ? nil : value
}

/// True for "true" in any case, as the SDKs read boolean variables.
func environmentFlag(_ environment: [String: String], _ name: String) -> Bool {
    environmentValue(environment, name)?.lowercased() == "true"
}

/// Expands a leading `~` with HOME from the given environment.
func expandingTilde(_ path: String, environment: [String: String]) -> String? {
    guard path == "~" || path.hasPrefix("~/") else { return path }
    guard let home = environmentValue(environment, "HOME") else { return nil }
    return home + path.dropFirst()
}

/// Text on one line, at most `limit` characters, for error messages.
func oneLine(_ text: String, limit: Int = 200) -> String {
    var s = text.replacingOccurrences(of: "\r\n", with: " ")
    s = String(s.map { $0.isNewline || $0 == "\t" ? " " : $0 })
    s = s.trimmingCharacters(in: .whitespaces)
    if s.count > limit { s = String(s.prefix(limit)) + "…" }
    return s
}

/// Parses ISO 8601 times as AWS services write them ("2026-01-02T03:04:05Z", with or without
/// fractional seconds, or with an offset).
func parseISO8601(_ text: String) -> Date? {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    let plain = ISO8601DateFormatter()
    plain.formatOptions = [.withInternetDateTime]
    if let d = plain.date(from: trimmed) { return d }
    let fractional = ISO8601DateFormatter()
    fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return fractional.date(from: trimmed)
}

/// The text of the first `<name>...</name>` element (without attributes), XML entities decoded.
func xmlElementText(_ name: String, in xml: String) -> String? {
    guard let open = xml.range(of: "<\(name)>"),
        let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex)
    else { return nil }
    return xmlUnescape(String(xml[open.upperBound..<close.lowerBound]))
        .trimmingCharacters(in: .whitespacesAndNewlines)
}

func xmlUnescape(_ s: String) -> String {
    guard s.contains("&") else { return s }
    var out = ""
    var rest = Substring(s)
    while let amp = rest.firstIndex(of: "&") {
        out += rest[..<amp]
        guard let semi = rest[amp...].firstIndex(of: ";"), rest.distance(from: amp, to: semi) <= 10 else {
            out += "&"
            rest = rest[rest.index(after: amp)...]
            continue
        }
        let entity = rest[rest.index(after: amp)..<semi]
        switch entity {
        case "amp": out += "&"
        case "lt": out += "<"
        case "gt": out += ">"
        case "quot": out += "\""
        case "apos": out += "'"
        default:
            var scalar: Unicode.Scalar?
            if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                scalar = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
            } else if entity.hasPrefix("#") {
                scalar = UInt32(entity.dropFirst()).flatMap(Unicode.Scalar.init)
            }
            if let scalar { out.unicodeScalars.append(scalar) } else { out += "&" + entity + ";" }
        }
        rest = rest[rest.index(after: semi)...]
    }
    return out + rest
}

/// Percent-encodes for `application/x-www-form-urlencoded` bodies (RFC 3986 unreserved kept).
func formEncode(_ pairs: [(String, String)]) -> String {
    var allowed = CharacterSet.alphanumerics.intersection(
        CharacterSet(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127)))
    allowed.insert(charactersIn: "-._~")
    return pairs.map {
        ($0.0.addingPercentEncoding(withAllowedCharacters: allowed) ?? "") + "="
            + ($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
    }.joined(separator: "&")
}

/// The JSON document the ECS agent and EC2 instance metadata return.
struct CredentialsDocument: Decodable {
    var Code: String?
    var Message: String?
    var AccessKeyId: String?
    var SecretAccessKey: String?
    var Token: String?
    var Expiration: String?

    /// Decodes and validates; `source` and `fix` go into the error.
    static func parse(_ body: [UInt8], source: String, fix: String) throws -> AWSCredentials {
        let doc: CredentialsDocument
        do {
            doc = try JSONDecoder().decode(CredentialsDocument.self, from: Data(body))
        } catch {
            throw CredentialsError(
                .providerFailed, source: source,
                problem: "the answer (\(body.count) bytes) is not a credentials JSON document; it begins: "
                    + SecretRedaction.excerpt(body), fix: fix)
        }
        if let code = doc.Code, code != "Success" {
            throw CredentialsError(
                .providerFailed, source: source,
                problem: "the service reported \(oneLine(SecretRedaction.redact(code), limit: 80))"
                    + (doc.Message.map { ": " + oneLine(SecretRedaction.redact($0)) } ?? ""),
                fix: fix)
        }
        guard let key = doc.AccessKeyId, !key.isEmpty, let secret = doc.SecretAccessKey, !secret.isEmpty
        else {
            throw CredentialsError(
                .providerFailed, source: source,
                problem: "the answer lacks AccessKeyId or SecretAccessKey", fix: fix)
        }
        var expiration: Date?
        if let text = doc.Expiration {
            guard let date = parseISO8601(text) else {
                throw CredentialsError(
                    .providerFailed, source: source,
                    problem:
                        "the answer's Expiration '\(oneLine(SecretRedaction.redact(text), limit: 40))' is not an ISO 8601 time",
                    fix: fix)
            }
            expiration = date
        }
        let token = doc.Token.flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(
            accessKeyID: key, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }
}

/// The outcome of a request sent with retries.
enum RetriedResponse {
    /// A final HTTP answer (any status not retried, or the last retried one).
    case response(HTTPResponse, attempts: Int)
    /// Every attempt failed without an HTTP answer.
    case transportFailure(any Error, attempts: Int)
}

/// Whether an answer of a credentials endpoint is worth another try: a server error, 429, or an
/// AWS throttling or transient error code in its body (STS answers `Throttling` with 400).
func isTransientAnswer(_ response: HTTPResponse) -> Bool {
    if response.status >= 500 || response.status == 429 { return true }
    guard let code = xmlElementText("Code", in: response.bodyText) else { return false }
    return AWSError.throttlingCodes.contains(code) || AWSError.transientCodes.contains(code)
}

/// Sends `request` up to `attempts` times, retrying transport errors and 5xx / 429 answers.
func sendRetrying(
    _ request: HTTPRequest, transport: any HTTPTransport, timeout: Duration, attempts: Int, delay: Duration,
    retryStatus: (HTTPResponse) -> Bool = { $0.status >= 500 || $0.status == 429 }
) async throws -> RetriedResponse {
    let attempts = max(1, attempts)
    var last: RetriedResponse?
    for attempt in 1...attempts {
        if attempt > 1, delay > .zero { try await Task.sleep(for: delay) }
        try Task.checkCancellation()
        do {
            let response = try await transport.send(request, timeout: timeout)
            last = .response(response, attempts: attempt)
            if !retryStatus(response) { return last! }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            last = .transportFailure(error, attempts: attempt)
        }
    }
    return last!
}

func describeAttempts(_ n: Int) -> String { n == 1 ? "1 attempt" : "\(n) attempts" }

func describeTransportError(_ error: any Error) -> String {
    if let t = error as? TransportError { return oneLine(SecretRedaction.redact(t.reason), limit: 160) }
    return oneLine(SecretRedaction.redact(String(describing: error)), limit: 160)
}
