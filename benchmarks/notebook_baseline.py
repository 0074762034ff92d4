"""The seed notebook's featurization pattern, kept as the performance baseline.

A faithful copy of the OpenClassrooms notebook's approach (P8 "Déployez un modèle dans le cloud"):
the driver broadcasts the Keras weights, a scalar-iterator pandas UDF builds the model in each
task and calls `model.predict` on whole Arrow batches (Spark's default 10,000 rows), TensorFlow
uses every core in every Python worker, and files are read with Spark's default packing.
Two deliberate differences, both so the outputs can be compared with ours: the notebook's
`include_top=True` + `layers[-2]` output is written as the equivalent `include_top=False,
pooling="avg"` (ImageNet's top cannot be loaded offline), and the resize is bilinear like ours
(the notebook used PIL's default filter; the filter is not what makes it slow).

    spark-submit benchmarks/notebook_baseline.py INPUT OUTPUT WEIGHTS
"""

import io
import sys
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql.functions import col, element_at, pandas_udf, split


def main(input_dir: str, output: str, weights: str) -> None:
    started = time.time()
    spark = SparkSession.builder.appName("notebook-baseline").getOrCreate()

    from tensorflow.keras.applications.mobilenet_v2 import MobileNetV2

    model = MobileNetV2(include_top=False, pooling="avg", input_shape=(224, 224, 3), weights=None)
    model.load_weights(weights)
    brodcast_weights = spark.sparkContext.broadcast(model.get_weights())

    def model_fn():
        from tensorflow.keras.applications.mobilenet_v2 import MobileNetV2

        new_model = MobileNetV2(
            include_top=False, pooling="avg", input_shape=(224, 224, 3), weights=None
        )
        new_model.set_weights(brodcast_weights.value)
        return new_model

    def preprocess(content):
        from PIL import Image
        from tensorflow.keras.applications.mobilenet_v2 import preprocess_input
        from tensorflow.keras.preprocessing.image import img_to_array

        img = Image.open(io.BytesIO(content)).convert("RGB").resize([224, 224], Image.BILINEAR)
        arr = img_to_array(img)
        return preprocess_input(arr)

    def featurize_series(model, content_series):
        input = np.stack(content_series.map(preprocess))
        preds = model.predict(input, verbose=0)
        output = [p.flatten() for p in preds]
        return pd.Series(output)

    # The notebook's PandasUDFType.SCALAR_ITER, spelled with type hints (the enum is gone in 4.x).
    @pandas_udf("array<float>")
    def featurize_udf(content_series_iter: Iterator[pd.Series]) -> Iterator[pd.Series]:
        model = model_fn()
        for content_series in content_series_iter:
            yield featurize_series(model, content_series)

    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(input_dir)
    )
    images = images.withColumn("label", element_at(split(images["path"], "/"), -2))
    features_df = images.repartition(20).select(
        col("path"), col("label"), featurize_udf("content").alias("features")
    )
    features_df.write.mode("overwrite").parquet(output)
    print(f"BASELINE_SECONDS {time.time() - started:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
