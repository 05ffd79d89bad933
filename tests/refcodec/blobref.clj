;; The project's reference blob v4 codec (DESIGN §5.1), for the interop tests.
;;
;; It is deliberately NOT our codec: it is built only from Cognitect's
;; data.fressian and zstd-jni (Debian packages) plus the tag handlers Penpot's
;; backend registers, so our Python codec is checked against an independent
;; peer. Run it with the `blobref` launcher beside this file:
;;
;;   blobref encode        < value.json   tagged JSON value -> blob string
;;   blobref decode        < blob.txt     blob string       -> tagged JSON value
;;   blobref edn           < blob.txt     blob string       -> Clojure's printout
;;   blobref encode-cases  < cases.json   [{"name","value"}] -> each gains "blob"
;;   blobref decode-cases  < cases.json   [{"name","blob"}]  -> each gains "decoded" or "error"
;;
;; A blob: 2-byte big-endian version (4), 4-byte big-endian length of the
;; Fressian bytes, then one zstd frame of those bytes; all of it URL-safe
;; base64 without padding. Tagged JSON is described in tests/data/README.md.
(ns blobref
  (:require [clojure.data.fressian :as fres]
            [clojure.data.json :as json]
            [clojure.string :as str])
  (:import [com.github.luben.zstd Zstd]
           [java.io ByteArrayInputStream ByteArrayOutputStream]
           [java.nio ByteBuffer]
           [java.time Instant]
           [java.util Arrays Base64 UUID]
           [org.fressian Reader StreamingWriter Writer]
           [org.fressian.handlers ReadHandler WriteHandler]
           [org.fressian TaggedObject]))

(def blob-version 4)
(def zstd-level 3)

;; ------------------------------------------------------------ write side
(defmacro ^:private writer-fn
  "A WriteHandler whose body sees the Writer as `w` and the value as `v`."
  [& body]
  `(reify WriteHandler (write [_# ~'w ~'v] (let [~(with-meta 'w {:tag `Writer}) ~'w] ~@body))))

(defn- named-writer
  "Keywords and symbols: the tag, then namespace and name, both cached."
  [tag]
  (writer-fn (.writeTag w tag 2)
             (.writeObject w (namespace v) true)
             (.writeObject w (name v) true)))

(defn- list-writer [tag]
  (writer-fn (.writeTag w tag 1) (.writeList w v)))

(def ^:private penpot-write-handlers
  "Penpot's handlers, which take precedence over data.fressian's own."
  {clojure.lang.IPersistentMap
   {"clj/map" (writer-fn (.writeTag w "clj/map" 1)
                         ;; keys cached, values not: a closed list k1 v1 k2 v2 ...
                         (.beginClosedList ^StreamingWriter w)
                         (doseq [[k x] v]
                           (.writeObject w k true)
                           (.writeObject w x))
                         (.endList ^StreamingWriter w))}
   clojure.lang.Keyword {"clj/keyword" (named-writer "clj/keyword")}
   clojure.lang.Symbol {"clj/symbol" (named-writer "clj/symbol")}
   clojure.lang.IPersistentVector {"clj/vector" (list-writer "clj/vector")}
   clojure.lang.IPersistentSet {"clj/set" (list-writer "clj/set")}
   clojure.lang.ISeq {"clj/seq" (list-writer "clj/seq")}
   Character {"char" (writer-fn (.writeTag w "char" 1) (.writeInt w (long (int (char v)))))}
   Instant {"java/instant" (writer-fn (.writeTag w "java/instant" 1)
                                      (.writeInt w (.toEpochMilli ^Instant v)))}
   clojure.lang.BigInt {"clj/bigint" (writer-fn (.writeTag w "clj/bigint" 1)
                                                (.writeBytes w (.toByteArray (biginteger v))))}
   clojure.lang.Ratio {"clj/ratio" (writer-fn (.writeTag w "clj/ratio" 2)
                                              (.writeObject w (.numerator ^clojure.lang.Ratio v))
                                              (.writeObject w (.denominator ^clojure.lang.Ratio v)))}})

(def write-handlers
  (-> (merge fres/clojure-write-handlers penpot-write-handlers)
      fres/associative-lookup
      fres/inheritance-lookup))

;; ------------------------------------------------------------ read side
(defmacro ^:private reader-fn
  "A ReadHandler whose body sees the Reader as `r`."
  [& body]
  `(reify ReadHandler (read [_# ~'r _tag# _n#] (let [~(with-meta 'r {:tag `Reader}) ~'r] ~@body))))

(defn- read-map [^Reader r]
  (let [kvs ^java.util.List (.readObject r)]
    (when (odd? (.size kvs)) (throw (ex-info "map with a key but no value" {})))
    (persistent! (reduce (fn [m [k v]] (assoc! m k v)) (transient {}) (partition 2 kvs)))))

(defn- read-bigint [^Reader r] (bigint (BigInteger. ^bytes (.readObject r))))
(defn- read-ratio [^Reader r] (/ (bigint (.readObject r)) (bigint (.readObject r))))
(defn- read-seq [^Reader r] (apply list (.readObject r)))
(defn- read-set [^Reader r] (set (.readObject r)))

(def read-handlers
  (fres/associative-lookup
   (merge fres/clojure-read-handlers
          {"clj/map" (reader-fn (read-map r))
           "linked/map" (reader-fn (read-map r))
           "clj/keyword" (reader-fn (keyword (.readObject r) (.readObject r)))
           "clj/symbol" (reader-fn (symbol (.readObject r) (.readObject r)))
           "clj/vector" (reader-fn (vec (.readObject r)))
           "clj/set" (reader-fn (read-set r))
           "linked/set" (reader-fn (read-set r))
           "clj/seq" (reader-fn (read-seq r))
           "clj/list" (reader-fn (read-seq r))
           "char" (reader-fn (char (.readObject r)))
           "java/instant" (reader-fn (Instant/ofEpochMilli (.readInt r)))
           "clj/bigint" (reader-fn (read-bigint r))
           "bigint" (reader-fn (read-bigint r))
           "clj/ratio" (reader-fn (read-ratio r))
           "ratio" (reader-fn (read-ratio r))})))

;; ------------------------------------------------------------ blob v4
(defn fressian-bytes ^bytes [value]
  (let [out (ByteArrayOutputStream.)]
    (fres/write-object (fres/create-writer out :handlers write-handlers) value)
    (.toByteArray out)))

(defn encode-blob ^bytes [value]
  (let [raw (fressian-bytes value)
        frame (Zstd/compress raw (int zstd-level))]
    (-> (ByteBuffer/allocate (+ 6 (alength frame)))
        (.putShort (short blob-version))
        (.putInt (alength raw))
        (.put frame)
        (.array))))

(defn decode-blob [^bytes blob]
  (when (< (alength blob) 6) (throw (ex-info "blob shorter than its header" {:bytes (alength blob)})))
  (let [header (ByteBuffer/wrap blob)
        version (.getShort header)
        size (.getInt header)]
    (when-not (= blob-version version) (throw (ex-info "unsupported blob version" {:version version})))
    (when (neg? size) (throw (ex-info "negative length in the header" {:length size})))
    (let [raw (Zstd/decompress (Arrays/copyOfRange blob 6 (alength blob)) (int size))]
      (when-not (= size (alength raw))
        (throw (ex-info "header length does not match the content" {:header size :actual (alength raw)})))
      (fres/read-object (fres/create-reader (ByteArrayInputStream. raw) :handlers read-handlers)))))

(defn b64 ^String [^bytes b] (.encodeToString (.withoutPadding (Base64/getUrlEncoder)) b))
(defn unb64 ^bytes [^String s] (.decode (Base64/getUrlDecoder) (str/trim s)))

;; ------------------------------------------------------------ tagged JSON
(defn- parse-named
  "\"ns/name\" or \"name\", split at the first slash (one at position 0 splits nothing)."
  [make ^String text]
  (let [i (.indexOf text "/")]
    (if (or (<= i 0) (= text "/"))
      (make nil text)
      (make (subs text 0 i) (subs text (inc i))))))

(defn- unparse-named [x]
  (if-let [ns (namespace x)] (str ns "/" (name x)) (name x)))

(declare from-tagged)

(defn- from-tag [tag arg]
  (case tag
    "$kw" (parse-named keyword arg)
    "$sym" (parse-named symbol arg)
    "$uuid" (UUID/fromString arg)
    "$inst" (Instant/ofEpochMilli (long arg))
    "$set" (set (map from-tagged arg))
    "$list" (apply list (map from-tagged arg))
    "$map" (into {} (map (fn [[k v]] [(from-tagged k) (from-tagged v)])) arg)
    "$char" (do (when-not (= 1 (count arg)) (throw (ex-info "$char needs one UTF-16 unit" {:arg arg})))
                (.charAt ^String arg 0))
    "$bigint" (bigint (BigInteger. ^String arg))
    "$ratio" (/ (bigint (BigInteger. (str (first arg)))) (bigint (BigInteger. (str (second arg)))))
    "$bigdec" (BigDecimal. ^String arg)
    "$bytes" (unb64 arg)
    "$double" (double arg)
    (throw (ex-info (str "unknown tag " tag " in tagged JSON") {:tag tag}))))

(defn from-tagged [x]
  (cond
    (map? x) (let [[tag arg] (first x)]
               (if (and (= 1 (count x)) (str/starts-with? tag "$"))
                 (from-tag tag arg)
                 (into {} (map (fn [[k v]] [(keyword nil k) (from-tagged v)])) x)))
    (vector? x) (mapv from-tagged x)
    (integer? x) (long x)
    :else x))

(defn to-tagged [x]
  (cond
    (keyword? x) {"$kw" (unparse-named x)}
    (symbol? x) {"$sym" (unparse-named x)}
    (uuid? x) {"$uuid" (str x)}
    (instance? Instant x) {"$inst" (.toEpochMilli ^Instant x)}
    (inst? x) {"$inst" (inst-ms x)}
    (char? x) {"$char" (str x)}
    (ratio? x) {"$ratio" [(str (numerator x)) (str (denominator x))]}
    (instance? clojure.lang.BigInt x) {"$bigint" (str x)}
    (instance? BigInteger x) {"$bigint" (str x)}
    (decimal? x) {"$bigdec" (str x)}
    (map? x) (if (every? simple-keyword? (keys x))
               (into (sorted-map) (map (fn [[k v]] [(name k) (to-tagged v)])) x)
               {"$map" (mapv (fn [[k v]] [(to-tagged k) (to-tagged v)]) x)})
    (set? x) {"$set" (mapv to-tagged x)}
    (seq? x) {"$list" (mapv to-tagged x)}
    (or (vector? x) (instance? java.util.List x)) (mapv to-tagged x)
    (bytes? x) {"$bytes" (b64 x)}
    (instance? TaggedObject x) {"$tagged" [(to-tagged (.getTag ^TaggedObject x))
                                          (mapv to-tagged (.value ^TaggedObject x))]}
    (float? x) (double x)
    :else x))

;; ------------------------------------------------------------ commands
(defn- encode-case [c]
  (assoc c "blob" (b64 (encode-blob (from-tagged (get c "value"))))))

(defn- decode-case [c]
  (try (assoc c "decoded" (to-tagged (decode-blob (unb64 (get c "blob")))))
       (catch Throwable e (assoc c "error" (str e)))))

(defn -main [& [command]]
  (let [input (slurp *in*)
        emit (fn [x] (println (json/write-str x)))]
    (case command
      "encode" (println (b64 (encode-blob (from-tagged (json/read-str input)))))
      "decode" (emit (to-tagged (decode-blob (unb64 input))))
      "edn" (prn (decode-blob (unb64 input)))
      "encode-cases" (emit (mapv encode-case (json/read-str input)))
      "decode-cases" (emit (mapv decode-case (json/read-str input)))
      (binding [*out* *err*]
        (println "usage: blobref encode|decode|edn|encode-cases|decode-cases < input")
        (System/exit 2)))
    (flush)
    (shutdown-agents)))
