// Spark's DStreams word count, the Spark side of scripts/bench-vs-spark.sh:
// textFileStream(DIR) -> flatMap(split on " ") -> mapToPair((w, 1))
// -> reduceByKey(+, SHUFFLE_PARTITIONS) -> count() per batch, which forces
// the whole job (as weir's pipeline ends in a count).
//
// A StreamingListener prints one line per completed batch on stdout:
//   BATCH <batch time ms> <input lines> <processing ms> <scheduling delay ms>
// (Spark's file stream reports 0 input records, so the lines are counted
// by an accumulator in the flatMap and read after the batch's count.)
//
// Usage (spark-submit from the pyspark package, see the script):
//   spark-submit --master local[2] --class WeirBenchWordCount app.jar DIR BATCH_MS SHUFFLE_PARTITIONS

import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.spark.SparkConf;
import org.apache.spark.streaming.Duration;
import org.apache.spark.streaming.api.java.JavaPairDStream;
import org.apache.spark.streaming.api.java.JavaStreamingContext;
import org.apache.spark.streaming.scheduler.BatchInfo;
import org.apache.spark.streaming.scheduler.StreamingListener;
import org.apache.spark.streaming.scheduler.StreamingListenerBatchCompleted;
import org.apache.spark.util.LongAccumulator;
import scala.Tuple2;

public final class WeirBenchWordCount {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: WeirBenchWordCount DIR BATCH_MS SHUFFLE_PARTITIONS");
            System.exit(2);
        }
        String dir = args[0];
        long batchMs = Long.parseLong(args[1]);
        int shufflePartitions = Integer.parseInt(args[2]);

        SparkConf conf = new SparkConf()
                .setAppName("weir-bench-wordcount")
                .setIfMissing("spark.master", "local[2]");
        JavaStreamingContext ssc = new JavaStreamingContext(conf, new Duration(batchMs));
        ssc.sparkContext().setLogLevel("WARN");

        LongAccumulator lines = ssc.sparkContext().sc().longAccumulator("lines");
        Map<Long, Long> linesPerBatch = new ConcurrentHashMap<>();

        JavaPairDStream<String, Integer> counts = ssc.textFileStream(dir)
                .flatMap(line -> {
                    lines.add(1);
                    return Arrays.asList(line.split(" ")).iterator();
                })
                .mapToPair(w -> new Tuple2<>(w, 1))
                .reduceByKey(Integer::sum, shufflePartitions);
        counts.foreachRDD((rdd, time) -> {
            rdd.count();
            linesPerBatch.put(time.milliseconds(), lines.value());
            lines.reset();
        });

        ssc.addStreamingListener(new StreamingListener() {
            @Override
            public void onBatchCompleted(StreamingListenerBatchCompleted completed) {
                BatchInfo b = completed.batchInfo();
                long t = b.batchTime().milliseconds();
                Long n = linesPerBatch.remove(t);
                System.out.printf("BATCH %d %d %d %d%n", t, n == null ? 0 : n,
                        (Long) b.processingDelay().get(), (Long) b.schedulingDelay().get());
                System.out.flush();
            }
        });
        ssc.start();
        ssc.awaitTermination();
    }
}
