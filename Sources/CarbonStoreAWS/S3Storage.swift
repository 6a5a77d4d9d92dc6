import AWSClient
import CarbonStore

/// `s3:`: one object per key in a bucket. The fence is S3's conditional write: `If-Match` on the
/// ETag that was read, or `If-None-Match: *` for a new user.
public struct S3Storage: ObjectStorage {
    public let s3: S3Client
    public let bucket: String
    public var encryption: ServerSideEncryption?
    /// How often a write that S3 reports as conflicting with a concurrent conditional write (409)
    /// is retried before it is reported as a version mismatch.
    public var conflictRetries: Int

    public init(
        s3: S3Client, bucket: String, encryption: ServerSideEncryption? = nil, conflictRetries: Int = 3
    ) {
        self.s3 = s3
        self.bucket = bucket
        self.encryption = encryption
        self.conflictRetries = conflictRetries
    }

    public func location(of key: String) -> String { "s3://\(bucket)/\(key)" }

    public func get(_ key: String) async throws -> StoredObject? {
        do {
            guard let object = try await s3.getObject(bucket: bucket, key: key) else { return nil }
            return StoredObject(bytes: object.body, version: ObjectVersion(object.eTag))
        } catch {
            throw StoreAWSError.wrap(error)
        }
    }

    /// One conditional GetObject, `If-None-Match: <cached ETag>`: S3 answers 304 Not Modified (no
    /// body) while the object still has that ETag, 200 with the object once it was rewritten, 404
    /// once it was deleted. The same IAM action as `get` (`s3:GetObject`).
    ///
    /// A 200 whose ETag is still `cached` (an S3-compatible store that ignores `If-None-Match`) is
    /// reported as unchanged too: the ETag names the content. An empty `cached` (a version no S3
    /// answer carries) is not sent as a condition; the object is read whole.
    public func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
        let condition = cached.rawValue.isEmpty ? nil : cached.rawValue
        let object: S3Object?
        do {
            object = try await s3.getObject(bucket: bucket, key: key, ifNoneMatch: condition)
        } catch {
            throw StoreAWSError.wrap(error)
        }
        guard let object else { return .missing }
        if object.notModified || (condition != nil && object.eTag == cached.rawValue) { return .unchanged }
        return .changed(StoredObject(bytes: object.body, version: ObjectVersion(object.eTag)))
    }

    @discardableResult
    public func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        let precondition: S3Client.Precondition
        switch condition {
        case .unconditional: precondition = .none
        case .mustNotExist: precondition = .ifNoneMatchAny
        case .mustMatch(let v): precondition = .ifMatch(v.rawValue)
        }
        var attempt = 0
        var backoff = Backoff(base: .milliseconds(20), cap: .milliseconds(500))
        while true {
            attempt += 1
            do {
                let etag = try await s3.putObject(
                    bucket: bucket, key: key, body: bytes, precondition: precondition, encryption: encryption)
                return ObjectVersion(etag)
            } catch let e as AWSError where e.statusCode == 412 {
                throw VersionMismatchError(location: location(of: key), expected: Self.describe(condition))
            } catch let e as AWSError
                where e.statusCode == 404 && e.code == "NoSuchKey" && condition != .unconditional
            {
                // S3 answers `If-Match` on a key that no longer exists (a delete came in between)
                // with 404 NoSuchKey: the object is not the one expected, and nothing was written.
                throw VersionMismatchError(location: location(of: key), expected: Self.describe(condition))
            } catch let e as AWSError where e.statusCode == 409 && attempt <= conflictRetries {
                _ = e  // ConditionalRequestConflict: another conditional write to the key is in flight.
                try await Task.sleep(for: backoff.next())
            } catch let e as AWSError where e.statusCode == 409 {
                _ = e
                throw VersionMismatchError(location: location(of: key), expected: Self.describe(condition))
            } catch {
                // A write that failed with a server error or a lost connection may still have
                // been applied: say so, rather than "not written".
                throw StoreAWSError.wrap(
                    error,
                    note:
                        "the write may or may not have been applied; retrying an update that adds items by id is safe"
                )
            }
        }
    }

    @discardableResult
    public func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        let ifMatch: String?
        switch condition {
        case .unconditional: ifMatch = nil
        case .mustMatch(let v): ifMatch = v.rawValue
        case .mustNotExist:
            if try await get(key) != nil {
                throw VersionMismatchError(location: location(of: key), expected: "no object")
            }
            return false
        }
        do {
            try await s3.deleteObject(bucket: bucket, key: key, ifMatch: ifMatch)
            return true
        } catch let e as AWSError where e.statusCode == 412 || (e.statusCode == 404 && ifMatch != nil) {
            throw VersionMismatchError(location: location(of: key), expected: ifMatch ?? "")
        } catch {
            throw StoreAWSError.wrap(error)
        }
    }

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        do {
            let page = try await s3.listObjects(
                bucket: bucket, prefix: prefix, startAfter: startAfter, maxKeys: limit)
            let keys = page.keys.filter { $0.hasSuffix(UserKeys.fileExtension) }
            // A page that says the listing goes on must end after where it started (keys come in
            // UTF-8 byte order): one that does not would have a caller ask for the same page for ever.
            if page.isTruncated {
                guard let last = page.keys.last,
                    startAfter.map({ Array($0.utf8).lexicographicallyPrecedes(last.utf8) }) ?? true
                else {
                    throw AWSError(
                        service: "S3", operation: "ListObjectsV2", resource: "s3://\(bucket)/\(prefix)",
                        statusCode: 200,
                        code: "MalformedResponse",
                        message:
                            "the answer says the listing is truncated but lists no key after \(startAfter.map { "'\($0)'" } ?? "the start"): a listing that makes no progress is not followed",
                        requestID: nil)
                }
            }
            return ObjectListing(keys: keys, nextStartAfter: page.isTruncated ? page.keys.last : nil)
        } catch {
            throw StoreAWSError.wrap(error)
        }
    }

    static func describe(_ condition: WriteCondition) -> String {
        switch condition {
        case .unconditional: return "any"
        case .mustNotExist: return "no object"
        case .mustMatch(let v): return "ETag \(v.rawValue)"
        }
    }
}

/// AWS failures as engine errors: the AWS error's message, with a kind the engine's callers map to
/// exit codes and HTTP statuses.
public struct StoreAWSError: CarbonStoreError {
    public var underlying: any Error & Sendable
    public var kind: ErrorKind
    /// What the caller should know besides the AWS error, e.g. that the outcome is unknown.
    public var note: String?
    public var description: String {
        String(describing: underlying) + (note.map { " (\($0))" } ?? "")
    }

    static func wrap(_ error: any Error, note: String? = nil) -> any Error {
        let wrapped = wrap(error)
        guard let note, var e = wrapped as? StoreAWSError, e.kind == .unavailable || e.kind == .storageFailure
        else {
            return wrapped
        }
        e.note = note
        return e
    }

    /// An error of the AWS client (an error answer, no answer, credentials) as the engine reports
    /// it, with the kind that the tool's exit code and the service's status follow; any other error
    /// as it is. For commands that call AWS beside the engine (`carbonstore aws setup`), so that the
    /// same failure exits alike.
    public static func wrapping(_ error: any Error) -> any Error { wrap(error) }

    static func wrap(_ error: any Error) -> any Error {
        switch error {
        case let e as AWSError:
            let kind: ErrorKind
            if e.isRetryable {
                kind = .unavailable
            } else if e.isAccessDenied && !e.isAuthenticationFailure {
                kind = .permissionDenied
            } else if e.code == "NoSuchBucket" || e.code == "ResourceNotFoundException"
                || e.isAuthenticationFailure || e.isWrongRegion
            {
                kind = .invalidInput
            } else {
                kind = .storageFailure
            }
            return StoreAWSError(underlying: e, kind: kind)
        case let e as AWSUnreachableError:
            return StoreAWSError(underlying: e, kind: .unavailable)
        case let e as CredentialsError:
            // A source that did not answer or is throttling: try again (exit 6, HTTP 503); anything
            // else needs the configuration changed.
            return StoreAWSError(underlying: e, kind: e.isTransient ? .unavailable : .invalidInput)
        default:
            return error
        }
    }
}
