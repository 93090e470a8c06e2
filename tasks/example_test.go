package tasks_test

import (
	"context"
	"fmt"

	"github.com/ccworker/ccworker/tasks"
)

// A handler of your own, registered beside the built-ins under the name Python clients
// send: app.send_task('myapp.tasks.scale', (2, 10)).
func ExampleRegistry_Register() {
	reg := tasks.NewRegistry()
	if err := tasks.RegisterBuiltins(reg); err != nil {
		panic(err)
	}
	err := reg.Register("myapp.tasks.scale", func(ctx context.Context, c *tasks.Call) (any, error) {
		v, err := c.Bind("scale", "x", "factor")
		if err != nil {
			return nil, err // TypeError, as Python would raise it
		}
		x, ok1 := v[0].(int64)
		f, ok2 := v[1].(int64)
		if !ok1 || !ok2 {
			return nil, tasks.NewException("myapp.errors", "BadInput", "x and factor must be ints")
		}
		return x * f, nil
	})
	if err != nil {
		panic(err)
	}

	h, _ := reg.Lookup("myapp.tasks.scale")
	out, err := h(context.Background(), &tasks.Call{Args: []any{int64(2), int64(10)}})
	fmt.Println(out, err)
	_, err = h(context.Background(), &tasks.Call{Args: []any{"2", int64(10)}})
	fmt.Println(err)
	// Output:
	// 20 <nil>
	// BadInput(x and factor must be ints)
}
