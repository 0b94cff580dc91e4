(defproject forumstats "0.1.0-SNAPSHOT"
  :resource-paths ["_resources"]
  :target-path "_build"
  :min-lein-version "2.0.0"
  :jvm-opts ["-client"]
  :dependencies  [[org.apache.storm/storm-client "2.8.1"
                   :exclusions [log4j org.slf4j/slf4j-log4j12 org.slf4j/slf4j-api]]
                  [org.apache.storm/flux-core "2.8.1"
                   :exclusions [org.apache.storm/storm-core]]]
  :jar-exclusions     [#"log4j\.properties" #"org\/apache\/storm\/(?!flux)" #"trident" #"META-INF" #"meta-inf" #"\.yaml"]
  :uberjar-exclusions [#"log4j\.properties" #"org\/apache\/storm\/(?!flux)" #"trident" #"META-INF" #"meta-inf" #"\.yaml"]
  )
