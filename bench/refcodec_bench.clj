;; Timing mode for the reference blob codec, used by bench/codec.py.
;;
;; usage: java -cp <jars> clojure.main bench/refcodec_bench.clj BLOBREF_CLJ EVENTS_JSON SECONDS
;;
;; Loads tests/refcodec/blobref.clj as it is (a namespace; its -main runs only
;; under `clojure -m`), so the codec timed is exactly the tests' reference one.
;; Converts the tagged-JSON events once, warms the JIT up for SECONDS, then
;; times encode (value -> base64url blob) and decode (blob -> value) and prints
;; one JSON line: events, raw_bytes, blob_chars, encode_eps, decode_eps.
(require '[clojure.data.json :as json])

(let [[ref-path events-path seconds] *command-line-args*]
  (load-file ref-path)
  (let [from-tagged @(resolve 'blobref/from-tagged)
        fressian-bytes @(resolve 'blobref/fressian-bytes)
        encode-blob @(resolve 'blobref/encode-blob)
        decode-blob @(resolve 'blobref/decode-blob)
        b64 @(resolve 'blobref/b64)
        unb64 @(resolve 'blobref/unb64)
        data (from-tagged (json/read-str (slurp events-path)))
        n (count data)
        budget-ns (long (* 1e9 (Double/parseDouble seconds)))
        best-ns (fn [f]
                  ;; warm up for the budget, then the best single run within another budget
                  (let [warm-end (+ (System/nanoTime) budget-ns)]
                    (while (< (System/nanoTime) warm-end) (f)))
                  (let [end (+ (System/nanoTime) budget-ns)]
                    (loop [best Long/MAX_VALUE]
                      (let [t0 (System/nanoTime)
                            _ (f)
                            dt (- (System/nanoTime) t0)
                            best (min best dt)]
                        (if (< (System/nanoTime) end) (recur best) best)))))
        blob (b64 (encode-blob data))
        enc-ns (best-ns #(b64 (encode-blob data)))
        dec-ns (best-ns #(decode-blob (unb64 blob)))]
    (println (json/write-str {"events" n
                              "raw_bytes" (alength ^bytes (fressian-bytes data))
                              "blob_chars" (count blob)
                              "encode_eps" (/ (* n 1e9) enc-ns)
                              "decode_eps" (/ (* n 1e9) dec-ns)}))))
